"""Any source edgec builds, as a trainable PyTorch module.

A PyTorch `model.py:Class` is the user's own module and is trained directly. Every other source
(ONNX, .pt2, Keras, SavedModel) is first imported to the common IR by its frontend, then converted
with onnx2torch 1.5.15. Measured on digits and MobileNetV2 against onnx2torch2 2.2.0 and
onnx2pytorch 0.6.0: onnx2torch and its fork onnx2torch2 convert both exactly (max abs error 2e-6 and
1.4e-5 against onnxruntime) into real nn.Conv2d/BatchNorm2d/Linear layers that Torch-Pruning prunes
and torch.onnx exports; onnx2pytorch 0.6.0 refuses opset-17 BatchNormalization (training_mode).
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import onnx_ir as ir

from edgec import frontends
from edgec.errors import InputError, UnsupportedError, require

ONNX2TORCH = "onnx2torch==1.5.15"


@dataclass
class Trainable:
    """A torch module and the IR model it stands for (whose I/O names and shapes the output keeps)."""

    module: object  # torch.nn.Module
    source_model: ir.Model
    converted: bool  # True when onnx2torch made the module from the IR

    @property
    def input_names(self) -> list[str]:
        initializers = set(self.source_model.graph.initializers)
        return [v.name for v in self.source_model.graph.inputs if v.name not in initializers]

    @property
    def dynamic_batch(self) -> bool:
        shape = self.source_model.graph.inputs[0].shape
        return shape is not None and len(shape) > 0 and not isinstance(shape[0], int)

    def example(self) -> tuple:
        """Zeros of one sample per input (free dimensions taken as 1)."""
        import torch

        values = {v.name: v for v in self.source_model.graph.inputs}
        return tuple(torch.zeros([d if isinstance(d, int) else 1 for d in values[name].shape],
                                 dtype=getattr(torch, values[name].dtype.numpy().name))
                     for name in self.input_names)


def load(source: str, specs=(), weights: str | None = None, trust_code: bool = False) -> Trainable:
    """The source as IR and as a torch module in training-ready form."""
    model = frontends.load(source, specs, weights, trust_code)
    if frontends.source_format(source) == "torch" and not source.endswith(".pt2"):
        from edgec.frontends import torch as torch_frontend

        return Trainable(torch_frontend.instantiate(source, weights), model, converted=False)
    return Trainable(from_ir(model, source), model, converted=True)


def from_ir(model: ir.Model, label: str):
    """onnx2torch's fx.GraphModule for an IR model; an operator it cannot convert is one line."""
    onnx2torch = _onnx2torch()
    try:
        return onnx2torch.convert(ir.to_proto(model))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedError(
            f"{label} cannot be made trainable: onnx2torch says '{reason}'; compress the PyTorch source "
            "(model.py:Class --weights) instead, or use --low-rank alone, which works on the ONNX graph"
        ) from exc


def _onnx2torch():
    """Import onnx2torch. It imports torchvision only for its NonMaxSuppression and RoiAlign converters,
    and torchvision does not import beside torch 2.13 CPU (facts.md): a stand-in that refuses those two
    operators takes its place while onnx2torch loads."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    require("torch", "torch")
    try:
        import torchvision  # noqa: F401
    except Exception:
        stand_in = types.ModuleType("torchvision")
        stand_in.ops = types.ModuleType("torchvision.ops")
        stand_in.ops.nms = stand_in.ops.roi_align = stand_in.ops.box_convert = _needs_torchvision
        sys.modules.update({"torchvision": stand_in, "torchvision.ops": stand_in.ops})
        try:
            return _import_onnx2torch()
        finally:
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]
    return _import_onnx2torch()


def _import_onnx2torch():
    try:
        import onnx2torch
    except ImportError as exc:
        raise InputError(f"onnx2torch is not installed: run `pip install --no-deps {ONNX2TORCH}` (`make install` "
                         "does; --no-deps because its torchvision requirement does not import beside torch 2.13)") from exc
    return onnx2torch


def _needs_torchvision(*_args, **_kwargs):
    raise InputError("NonMaxSuppression and RoiAlign need torchvision, which does not import beside this torch")
