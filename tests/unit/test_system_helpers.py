"""The shared system chores: the reason a process failed, folders that appear whole, locks."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edgec import system
from edgec.errors import DeviceError


@pytest.mark.parametrize("text, line", [
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."),
    ("error: input 'x' is float64\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", "error: input 'x' is float64"),
    ("Traceback (most recent call last):\n  File \"x\", line 1\nValueError: bad shape\n", "ValueError: bad shape"),
    ("Reading package lists...\nE: Unable to locate package nope\nW: something\n", "E: Unable to locate package nope"),
    ("I0000 00:00:1700000000.000 123 x.cc:1] loaded\nssh: connect to host x port 1: Connection refused\n",
     "ssh: connect to host x port 1: Connection refused"),
    ("2026-01-01 12:00:00.000 [W:onnxruntime:, session.cc:1] slow\nsegmentation fault\n", "segmentation fault"),
    ("\n \n", "no output"),
])
def test_last_line_is_the_reason_never_a_log_line(text, line):
    assert system.last_line(text) == line


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "out"
    with system.temporary_folder(final) as folder:
        (folder / "a").write_text("1")
        system.publish(folder, final)
    assert (final / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with system.temporary_folder(final) as folder:
            (folder / "b").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not (final / "b").exists()


def test_sweep_removes_only_what_dead_runs_left(tmp_path):
    dead = _dead_pid()
    stale, live = tmp_path / f".out.edgec-{dead}-x", tmp_path / f".out.edgec-{os.getpid()}-y"
    stale.mkdir()
    live.mkdir()
    with system.temporary_folder(tmp_path / "out"):
        assert not stale.exists() and live.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_file_lock_is_released_after_its_block(tmp_path):
    for _ in range(2):
        with system.file_lock(tmp_path / "x.lock"):
            pass


def test_run_tool_names_the_step_and_the_reason():
    with pytest.raises(DeviceError, match="listing failed: .*No such file"):
        system.run_tool(["ls", "/definitely/not/here"], "listing")
    with pytest.raises(DeviceError, match="not installed"):
        system.run_tool(["edgec-no-such-tool"], "running it")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path))
    assert system.cache_root() == tmp_path


def test_scratch_folders_of_dead_runs_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(system.tempfile, "tempdir", str(tmp_path))
    stale, live = tmp_path / f"edgec-{_dead_pid()}-ort-x", tmp_path / f"edgec-{os.getpid()}-ort-y"
    stale.mkdir()
    live.mkdir()
    with system.scratch("ort") as folder:
        assert Path(folder).parent == tmp_path and not stale.exists() and live.exists()
    assert not Path(folder).exists()
