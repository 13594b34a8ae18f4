"""No code runs unless the user says so: a crafted .pt2 and a model.py are refused without --trust-code,
and a marker file proves that nothing of theirs ran."""
from __future__ import annotations

import pickle
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import DIGITS, digits_cnn_class, edgec
from test_output_safety import one_line_refusal


class _Planted:
    """A pickle that creates a marker file when it is unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def crafted_pt2(tmp_path_factory) -> tuple[Path, Path]:
    """A real torch.export program of DigitsCNN whose sample-inputs entry is replaced by a planted pickle:
    torch.export.load unpickles it (measured: the marker appears when it is loaded)."""
    import torch

    DigitsCNN = digits_cnn_class()

    folder = tmp_path_factory.mktemp("pt2")
    honest, crafted, marker = folder / "honest.pt2", folder / "crafted.pt2", folder / "RAN"
    torch.export.save(torch.export.export(DigitsCNN().eval(), (torch.zeros(1, 1, 8, 8),)), honest)
    with zipfile.ZipFile(honest) as src, zipfile.ZipFile(crafted, "w") as dst:
        for info in src.infolist():
            planted = info.filename.endswith("sample_inputs/model.pt")
            dst.writestr(info, pickle.dumps(_Planted(marker), protocol=2) if planted else src.read(info))
    return crafted, marker


@pytest.mark.parametrize("command", ["build", "inspect"])
def test_a_crafted_pt2_runs_nothing_without_trust(crafted_pt2, tmp_path, command):
    crafted, marker = crafted_pt2
    args = ["-o", tmp_path / "out"] if command == "build" else []
    one_line_refusal(edgec(command, crafted, *args), "--trust-code", "runs the code")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_the_crafted_pt2_does_run_code_when_trusted(crafted_pt2, tmp_path):
    """The yardstick is real: with --trust-code the same file runs its pickle (and then fails to load)."""
    crafted, marker = crafted_pt2
    proc = edgec("inspect", crafted, "--trust-code")
    assert proc.returncode == 2 and marker.exists()
    marker.unlink()


def test_a_model_py_runs_nothing_without_trust(tmp_path):
    marker = tmp_path / "RAN"
    source = tmp_path / "model.py"
    source.write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\nclass Net(torch.nn.Module):\n    pass\n")
    for command, args in (("build", ["-o", tmp_path / "out"]), ("inspect", [])):
        one_line_refusal(edgec(command, f"{source}:Net", "--input-shape", "x:1,4", *args), "--trust-code")
    assert not marker.exists()


def test_every_command_that_loads_a_source_asks_for_trust(tmp_path, digits_model, digits_files):
    """compare, tune, --precision auto and a compress --student load model.py code too: each is refused in one line
    before any work without --trust-code, and nothing of the file runs."""
    marker = tmp_path / "RAN"
    source = tmp_path / "model.py"
    source.write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\nclass Net(torch.nn.Module):\n    pass\n")
    model_py, data = f"{source}:Net", digits_files["eval"]
    commands = [
        ["compare", model_py, "--targets", "onnxruntime", "-o", tmp_path / "cmp"],
        ["tune", model_py, "--eval", data, "--trials", "1", "-o", tmp_path / "tune"],
        ["build", model_py, "--precision", "auto", "--eval", data, "-o", tmp_path / "auto"],
        ["compress", digits_model, "--distill", "--train-data", data, "--student", model_py, "-o", tmp_path / "s.onnx"],
    ]
    for command in commands:
        one_line_refusal(edgec(*command, "--input-shape", "x:1,1,8,8"), "--trust-code", "runs the code")
    assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model.py"]
