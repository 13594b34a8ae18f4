"""Output folders that cannot destroy data: --force replaces only edgec's own folders, never the current
folder, its ancestors or a folder holding an input; two builds never write one folder at once."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT

CLI = [sys.executable, "-m", "edgec"]


def run_in(cwd, *args, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
                          **kwargs)


def one_line_refusal(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgec: error:"), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def project(tmp_path, digits_model):
    """A user's project folder: a training script, weights, data and the exported model, in a sub-folder."""
    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    shutil.copy(digits_model, root / "model.onnx")
    (root / "train.py").write_text("print('training')\n")
    (root / "weights.pth").write_bytes(b"\0" * 64)
    (root / "sub" / "data.csv").write_text("1,2,3\n")
    return root


@pytest.mark.parametrize("output", [".", "", "SOURCE_FOLDER", "..", "SOURCE_FILE"])
def test_force_never_replaces_the_current_folder_its_ancestors_or_the_source(project, output):
    before = snapshot(project)
    cwd = project / "sub" if output == ".." else project
    target = {"SOURCE_FOLDER": project, "SOURCE_FILE": project / "model.onnx"}.get(output, output)
    proc = run_in(cwd, "build", project / "model.onnx", "-o", target, "--force")
    one_line_refusal(proc)
    assert snapshot(project) == before and not list(project.parent.glob(".*edgec-*"))


def test_force_refuses_a_folder_edgec_did_not_write(project, tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"jpeg")
    proc = run_in(tmp_path, "build", project / "model.onnx", "-o", other, "--force")
    one_line_refusal(proc, "edgec did not write")
    assert (other / "holiday.jpg").read_bytes() == b"jpeg"


def test_force_replaces_edgec_artifacts_and_empty_folders(project, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert run_in(tmp_path, "build", project / "model.onnx", "-o", out, "--force").returncode == 0
    assert (out / ".edgec-output").exists()
    proc = run_in(tmp_path, "build", project / "model.onnx", "-o", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.edgec-")]


def test_a_symlinked_output_is_judged_by_what_it_points_to(project, tmp_path):
    (tmp_path / "link").symlink_to(project, target_is_directory=True)
    one_line_refusal(run_in(tmp_path, "build", project / "model.onnx", "-o", tmp_path / "link", "--force"))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "art")
    proc = run_in(tmp_path, "build", project / "model.onnx", "-o", tmp_path / "dangling")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "nowhere" / "art" / "edgec.json").exists()


@pytest.mark.parametrize("where", ["json_over_source", "json_in_missing_readonly", "json_exists", "readonly_out"])
def test_output_paths_are_checked_before_any_work(project, tmp_path, where):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    (tmp_path / "old.json").write_text("{}")
    args = {"json_over_source": ["--json", project / "model.onnx", "-o", tmp_path / "o"],
            "json_in_missing_readonly": ["--json", locked / "r" / "x.json", "-o", tmp_path / "o"],
            "json_exists": ["--json", tmp_path / "old.json", "-o", tmp_path / "o"],
            "readonly_out": ["-o", locked / "o"]}[where]
    if os.geteuid() == 0 and where in ("json_in_missing_readonly", "readonly_out"):
        pytest.skip("root writes into read-only folders")
    started = time.perf_counter()
    proc = run_in(tmp_path, "build", project / "model.onnx", *args)
    one_line_refusal(proc)
    assert time.perf_counter() - started < 30 and not (tmp_path / "o").exists()
    assert (project / "model.onnx").stat().st_size > 1000


def test_two_builds_to_one_folder_one_wins_the_other_is_refused(project, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([*CLI, "build", project / "model.onnx", "-o", out], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=600) for p in procs)
    assert codes == [0, 2], [p.stderr.read() for p in procs]
    assert (out / "edgec.json").exists() and not [p for p in tmp_path.iterdir() if ".edgec-" in p.name]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, digits_model):
    out = tmp_path_factory.mktemp("json") / "art"
    proc = run_in(out.parent, "build", digits_model, "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("command", [["verify"], ["bench", "--iters", "2", "--warmup", "0"], ["profile", "--iters", "2"],
                                     ["inspect"]])
def test_every_json_output_follows_the_rule_of_build(artifact, tmp_path, command):
    """An existing --json file is replaced only with --force; a file inside the artifact (an input) never."""
    report = tmp_path / "report.json"
    report.write_text("keep")
    one_line_refusal(run_in(tmp_path, *command, artifact, "--json", report), "--force")
    assert report.read_text() == "keep"
    one_line_refusal(run_in(tmp_path, *command, artifact, "--json", artifact / "extra.json", "--force"), "input")
    assert not (artifact / "extra.json").exists()
    proc = run_in(tmp_path, *command, artifact, "--json", report, "--force")
    assert proc.returncode == 0, proc.stderr
    assert report.read_text().startswith("{")
