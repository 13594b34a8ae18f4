"""Frontends turn a user's source model into the common IR, keyed by what the source looks like."""
from __future__ import annotations

import re
from pathlib import Path

import onnx_ir as ir

from edgec import ir as eir
from edgec.errors import InputError


# A PyTorch source names its class after the file: path/model.py:ClassName
PY_CLASS = re.compile(r"(?P<path>.+\.py):(?P<name>\w+)")


def source_path(source: str) -> Path:
    """The file or folder a source names (model.py for model.py:Class)."""
    match = PY_CLASS.fullmatch(source)
    return Path(match["path"] if match else source)


def source_format(source: str) -> str:
    """'onnx', 'torch' or 'tf', judged from the path the user gave."""
    path = source_path(source)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".py", ".pt2"):
        return "torch"
    if suffix in (".keras", ".h5") or (path.is_dir() and (path / "saved_model.pb").exists()):
        return "tf"
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    if suffix in ("", ".pb", ".tflite", ".pt", ".pth"):
        hint = {".pth": "a .pth holds weights only: pass model.py:ClassName --weights FILE.pth"}.get(suffix, "")
        raise InputError(f"cannot build from {path}: " + (hint or "give an .onnx file, model.py:Class, .pt2, .keras, .h5 or a SavedModel folder"))
    return "onnx"  # unknown suffix: let the ONNX reader say whether it is one


def runs_code(source: str) -> bool:
    """True for sources whose loading runs code they hold: a model.py is imported, a .pt2 is unpickled."""
    return source_format(source) == "torch"


def require_trust(source: str, trust_code: bool) -> None:
    """Refuse (exit 2) a source that runs code when loaded, unless `trust_code`: every command that loads one
    calls this before any work, so nothing of it runs and nothing is written."""
    if source_format(source) == "torch" and not trust_code:
        raise InputError(f"loading {source} runs the code it holds (a model.py is imported, a .pt2 program is "
                         "unpickled): pass --trust-code if you trust where it came from, or export it to ONNX")


def load(source: str, input_specs=(), weights: str | None = None, trust_code: bool = False) -> ir.Model:
    """Load any supported source as an onnx_ir Model with the user's input shapes applied.

    A source that runs code when loaded is refused unless `trust_code`: nothing of it runs before.
    """
    require_trust(source, trust_code)
    fmt = source_format(source)
    if weights and fmt != "torch":
        raise InputError(f"--weights is for PyTorch model.py:Class sources; {source} already holds its weights")
    if fmt == "onnx":
        model = eir.load(source)
    elif fmt == "torch":
        from edgec.frontends import torch as frontend

        model = frontend.load(source, list(input_specs), weights)
    else:
        from edgec.frontends import tensorflow as frontend

        model = frontend.load(source, list(input_specs))
    eir.apply_input_specs(model, list(input_specs))
    return model
