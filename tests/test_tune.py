"""edgec tune: an Optuna study over build flags, resumable in SQLite, shared through a real PostgreSQL."""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, edgec, infer, manifest
from test_cli import assert_one_line_error


def tune(*args) -> list[str]:
    return [sys.executable, "-m", "edgec", "tune", *map(str, args)]


@pytest.mark.slow
def test_tune_finds_a_configuration_that_rebuilds_to_its_figures_and_resumes(tmp_path, digits_model, digits_files,
                                                                              digits_data):
    study = tmp_path / "study"
    args = [digits_model, "-t", "tflite-arm", "--eval", digits_files["eval"], "--calibration", digits_files["calib"],
            "--objective", "latency,size", "--max-accuracy-drop", 1.0, "--iters", 10, "-o", study, "--json", "-"]
    first = json.loads(edgec("tune", *args, "--trials", 12, check=True).stdout)
    assert first["trials"] == first["added"] == 12
    assert first["storage"].startswith("sqlite:///") and (study / "study.db").exists()
    results = json.loads((study / "results.json").read_text())
    trials = results["candidates"]
    assert len(trials) == 12 and all(t["status"] == "measured" for t in trials)
    best = results["candidates"][results["choice"]["index"]]
    assert best == first["best"] and results["baseline_accuracy"] - best["figures"]["accuracy"] <= 1.0

    config = (study / "best.toml").read_text()
    assert f'precision = "{best["precision"]}"' in config and first["command"].startswith("edgec build")
    rebuilt = tmp_path / "rebuilt"
    edgec("build", "--config", study / "best.toml", "-o", rebuilt, check=True)
    assert manifest(rebuilt)["model"]["bytes"] == best["figures"]["size_bytes"]
    logits = infer(rebuilt, {"input": digits_data["x_test"]}, tmp_path)["logits"]
    accuracy = 100 * np.mean(logits.argmax(1) == digits_data["y_test"])
    assert accuracy == pytest.approx(best["figures"]["accuracy"], abs=1e-9)

    again = json.loads(edgec("tune", *args, "--trials", 1, check=True).stdout)  # same storage: resumes
    assert again["trials"] == 13 and again["added"] == 1
    assert len(json.loads((study / "results.json").read_text())["candidates"]) == 13


def test_tune_refuses_bad_input_in_one_line(tmp_path, digits_model, digits_files):
    out = tmp_path / "study"
    common = [digits_model, "--eval", digits_files["eval"], "-o", out]
    assert_one_line_error(edgec("tune", *common, "--trials", 0), "--trials")
    assert_one_line_error(edgec("tune", *common, "--trials", 1, "--storage", "postgresql://nobody@127.0.0.1:1/none"),
                          "cannot open the study storage")
    assert_one_line_error(edgec("tune", *common, "--trials", 1, "--objective", "joy"), "unknown objective")
    assert not out.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgresql():
    """A throwaway PostgreSQL server (Debian's package) on a free local port. initdb refuses root, so as root
    the server runs as an unprivileged user this fixture creates."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.fail("Debian's postgresql is not installed (`apt-get install postgresql`; .ci/run installs it)")
    bin_dir = Path(binaries[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="edgec-pg-"))
    as_user = []
    if os.geteuid() == 0:
        user = "edgec-pg"
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                           check=True)
        shutil.chown(folder, user)
        as_user = ["runuser", "-u", user, "--"]
    port, data = _free_port(), folder / "data"
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "edgec", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://edgec@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_study_through_postgresql(tmp_path, postgresql, digits_model, digits_files):
    import optuna

    workers = [subprocess.Popen(tune(digits_model, "-t", "onnxruntime", "--eval", digits_files["eval"],
                                     "--calibration", digits_files["calib"], "--trials", 3, "--iters", 10,
                                     "--storage", postgresql, "--study", "digits-shared", "-o", tmp_path / f"w{i}"),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=1500)
        assert worker.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="digits-shared", storage=postgresql)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 6
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both workers added trials
    assert {p.parents[2].name for p in tmp_path.glob("w*/trials/*/edgec.json")} == {"w0", "w1"}


def test_a_worker_that_loses_the_race_to_create_the_tables_still_gets_the_study(postgresql):
    """Optuna creates its enum types and tables check-then-create, so two workers starting on a new database
    can both find nothing and both create: the loser's PostgreSQL says "already exists". The interleaving is
    made exact here: just before this worker's first create (an enum type), another worker makes the study."""
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.engine import Engine

    from edgec.choice.tune import open_study

    admin = create_engine(postgresql, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("CREATE DATABASE race"))
    admin.dispose()
    url = postgresql.rsplit("/", 1)[0] + "/race"
    interleaved = []

    def another_worker_creates_first(conn, cursor, sql, *args):
        if sql.lstrip().startswith("CREATE TYPE") and not interleaved:
            interleaved.append(sql)
            open_study(url, "race", ["latency"])

    event.listen(Engine, "before_cursor_execute", another_worker_creates_first)
    try:
        study = open_study(url, "race", ["latency"])
    finally:
        event.remove(Engine, "before_cursor_execute", another_worker_creates_first)
    assert interleaved and study.study_name == "race" and len(study.directions) == 1
