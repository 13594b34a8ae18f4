"""Hardware-aware choice: compare, --precision auto, the HTML report (rendered in headless Chromium)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, edgec, manifest
from test_cli import assert_one_line_error

from edgec.choice.compare import EMULATED_RULE, Candidate, choose, mark_pareto
from edgec.choice.measure import Figures
from edgec.choice.pareto import Objective, front

TARGETS = "onnxruntime,tflite-arm,openvino-cpu"


def wide_edgec(*args) -> subprocess.CompletedProcess:
    """edgec with a terminal wide enough that table cells are not wrapped."""
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True,
                          timeout=1800, cwd=ROOT, env=dict(os.environ, COLUMNS="250"))


def test_pareto_front_on_a_hand_made_table():
    rows = [  # (latency ms, size kB, accuracy %)
        (1.0, 100, 99.0),  # optimal: the fastest
        (2.0, 30, 99.0),  # optimal: the smallest
        (3.0, 100, 99.5),  # optimal: the most accurate
        (2.0, 100, 98.0),  # dominated by row 0 on every objective
        (1.0, 100, 99.0),  # a tie with row 0: neither dominates, both optimal
        (3.0, 100, 99.4),  # dominated by row 2 (same cost, less accurate)
    ]
    objectives = [Objective("latency", lambda r: r[0]), Objective("size", lambda r: r[1]),
                  Objective("accuracy", lambda r: r[2], maximize=True)]
    assert front(rows, objectives) == [True, True, True, False, True, False]
    assert front([(1.0, None, 99.0), (2.0, 10, 90.0)], objectives) == [False, True]  # no figure: no part


def figures(p50, size, accuracy, emulated=False):
    return Figures(size, p50, p50 * 1.2, 1000 / p50, 100.0, accuracy, 1.0, emulated)


def test_choice_is_the_fastest_within_budget_and_never_emulated_timings():
    rows = [Candidate("t", "fp32", figures=figures(1.0, 100, 99.5)),
            Candidate("t", "int8", figures=figures(0.4, 30, 97.0)),
            Candidate("t", "fp16", figures=figures(0.9, 50, 99.4)),
            Candidate("t", "int8", status="refused", reason="why")]
    assert choose(rows, 99.5, budget=1.0).index == 2  # int8 is faster but loses 2.5 points
    assert choose(rows, 99.5, budget=3.0).index == 1
    slower_int8 = [Candidate("t", "fp32", figures=figures(0.09, 100, 98.0)),
                   Candidate("t", "int8", figures=figures(0.2, 30, 98.0))]
    assert choose(slower_int8, 98.0, budget=50.0).index == 0  # int8 as accurate, but measured slower: fp32 kept
    mark_pareto(rows)
    assert [r.pareto for r in rows] == [True, True, True, False]
    emulated = [Candidate("t", p, figures=figures(ms, size, 99.5, emulated=True))
                for p, ms, size in (("fp32", 0.1, 100), ("int8", 50.0, 30))]
    chosen = choose(emulated, 99.5, budget=1.0)
    assert chosen.index == 1 and chosen.why.startswith(EMULATED_RULE)  # the smallest, though "slower"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, digits_model, digits_files):
    folder = tmp_path_factory.mktemp("compare")
    proc = wide_edgec("compare", digits_model, "--targets", TARGETS, "--precisions", "fp32,int8",
                      "--eval", digits_files["eval"], "--calibration", digits_files["calib"], "--iters", 30,
                      "-o", folder / "out", "--json", folder / "results.json", "--html", folder / "report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"folder": folder, "stdout": proc.stdout, "results": json.loads((folder / "results.json").read_text())}


@pytest.mark.slow
def test_compare_prints_six_measured_rows_and_the_json_holds_the_same_numbers(comparison, digits_accuracy):
    results, stdout = comparison["results"], comparison["stdout"]
    rows = results["candidates"]
    assert [(r["target"], r["precision"]) for r in rows] == [
        (t, p) for t in TARGETS.split(",") for p in ("fp32", "int8")]
    assert all(r["status"] == "measured" and Path(r["artifact"]).is_dir() for r in rows)  # kept for reuse
    assert results["baseline_accuracy"] == pytest.approx(100 * digits_accuracy, abs=0.01)
    lines = [line for line in stdout.splitlines() if "│" in line]
    for row in rows:
        f = row["figures"]
        cells = next([c.strip() for c in line.split("│")] for line in lines
                     if f" {row['target']} " in line and f" {row['precision']} " in line)
        assert f"{f['p50_ms']:.3f}" in cells and f"{f['p90_ms']:.3f}" in cells and f"{f['accuracy']:.2f}" in cells
        assert ("*" in cells[1]) == row["pareto"]
        assert f["accuracy"] >= 100 * digits_accuracy - 2.0  # int8 digits keeps its accuracy on every runtime
        assert 0 < f["p50_ms"] <= f["p90_ms"] and f["size_bytes"] > 0 and f["build_s"] > 0
    assert any(r["pareto"] for r in rows)
    assert results["choice"]["index"] is not None and rows[results["choice"]["index"]]["pareto"]


@pytest.mark.slow
def test_report_renders_in_headless_chromium(comparison, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed (`apt-get install chromium`; .ci/run installs it)")
    from PIL import Image

    report = tmp_path / "again.html"
    edgec("report", comparison["folder"] / "results.json", "-o", report, check=True)
    html = report.read_text()
    assert html == (comparison["folder"] / "report.html").read_text()  # compare --html wrote the same report
    assert html.count("<svg") == 4 and "<script" not in html and "Pareto front" in html
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,2400"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<svg") == 4 and dom.count("<figure") == 4 and "<table>" in dom
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120,
                   check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2400, 1400)
    # Where the browser laid each chart out (side by side or stacked, by its fonts): a copy of the report with
    # one script that writes each svg's box into the DOM. Every chart is drawn there, none blank.
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", "<script>document.querySelectorAll('svg').forEach(s => {const r = "
                                  "s.getBoundingClientRect(); s.dataset.box = [r.top, r.bottom, r.left, r.right]"
                                  ".map(Math.round).join(' ')})</script></body>"))
    probed = subprocess.run([chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                            timeout=120).stdout
    boxes = [tuple(map(int, box.split())) for box in re.findall(r'data-box="([-\d ]+)"', probed)]
    assert len(boxes) == 4
    for top, bottom, left, right in boxes:
        region = pixels[top:bottom, left:right]
        assert region.size > 200 * 200 and (region < 128).mean() > 0.01 and region.std() > 20, (top, left)


def test_compare_refuses_bad_input_in_one_line(tmp_path, digits_model, digits_files):
    out = tmp_path / "out"
    proc = edgec("compare", digits_model, "--targets", "onnxruntime,tflite-moon", "-o", out)
    assert_one_line_error(proc, "unknown target 'tflite-moon'")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, input=np.zeros((5, 1, 6, 6), np.float32))
    proc = edgec("compare", digits_model, "--targets", "onnxruntime", "--eval", wrong, "-o", out)
    assert_one_line_error(proc, str(wrong))
    assert not out.exists()
    proc = edgec("report", tmp_path / "nope.json", "-o", tmp_path / "r.html")
    assert_one_line_error(proc, "not found")


@pytest.mark.slow
def test_precision_auto_measures_each_precision_and_config_replays_it(tmp_path, digits_model, digits_files):
    out = tmp_path / "auto"
    edgec("build", digits_model, "-t", "onnxruntime", "--precision", "auto", "--eval", digits_files["eval"],
          "--calibration", digits_files["calib"], "-o", out, check=True)
    choice = manifest(out)["choice"]
    assert [c["precision"] for c in choice["candidates"]] == ["fp32", "fp16", "int8"]
    assert all(c["status"] == "measured" and c["p50_ms"] > 0 and c["accuracy"] > 95 for c in choice["candidates"])
    fastest = min(choice["candidates"], key=lambda c: c["p50_ms"])
    assert choice["winner"] == fastest["precision"] == manifest(out)["precision"] and not choice["emulated"]
    assert "fastest measured" in choice["why"]
    if choice["winner"] == "int8":  # its scheme, method and bias correction replay as chosen, not measured again
        assert all(key in (out / "build.toml").read_text() for key in ("int8-scheme", "calibration-method"))
    replay = tmp_path / "replay"
    edgec("build", "--config", out / "build.toml", "-o", replay, check=True)
    rebuilt = manifest(replay)
    assert rebuilt["precision"] == choice["winner"] and rebuilt["choice"] is None  # replayed, not measured
    assert (replay / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()


@pytest.mark.slow
def test_precision_auto_keeps_the_precision_measured_fastest(tmp_path):
    """The tanh CNN's float islands make its int8 slower than fp32 on AVX2 hosts without VNNI (2.1x measured);
    on VNNI hosts int8, fp16 and fp32 come within 10 % of one another. Either way the build keeps what it measured
    fastest within the budget, never int8 for being int8."""
    sys.path.insert(0, str(ROOT / "models" / "digits"))
    from tanh_cnn import train_tanh_cnn

    model = train_tanh_cnn(tmp_path / "tanh")
    assert model["accuracy"] > 0.8
    out = tmp_path / "auto"
    edgec("build", model["model"], "-t", "onnxruntime", "--precision", "auto", "--eval", model["eval"],
          "--calibration", model["calibration"], "--max-accuracy-drop", 50, "-o", out, check=True)
    choice = manifest(out)["choice"]
    measured = {c["precision"]: c for c in choice["candidates"]}
    assert set(measured) == {"fp32", "fp16", "int8"} and all(c["status"] == "measured" for c in measured.values())
    assert choice["winner"] == min(measured.values(), key=lambda c: c["p50_ms"])["precision"], measured
    assert manifest(out)["precision"] == choice["winner"]


def test_build_config_file_round_trips_and_names_only_build_flags(tmp_path, digits_model):
    from edgec import config
    from edgec.cli import build

    flags = {opt.lstrip("-") for param in build.params for opt in param.opts if opt.startswith("--")}
    assert set(config.flags().values()) - {"source"} <= flags  # every key is a real build flag
    values = {"source": str(digits_model), "target": "tflite-arm", "precision": "int8",
              "input_shapes": ["input:1,1,8,8"],
              "calibration_method": "entropy", "calibration_samples": 16, "eval_data": "e.npz", "weights": None}
    path = config.write(tmp_path / "b.toml", values, "a comment")
    assert 'calibration-method = "entropy"' in path.read_text() and "eval = " in path.read_text()
    assert config.load(path) == {k: v for k, v in values.items() if v is not None}
    assert config.command(values).endswith("--calibration-samples 16 --eval e.npz")
    bad = tmp_path / "bad.toml"
    bad.write_text('target = "onnxruntime"\nspeed = "max"\n')
    assert_one_line_error(edgec("build", digits_model, "--config", bad, "-o", tmp_path / "o"), "'speed'", "build flag")
    assert not (tmp_path / "o").exists()
