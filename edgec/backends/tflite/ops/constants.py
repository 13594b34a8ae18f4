"""Values known at build time that are still nodes: Constant, ConstantOfShape, and Dropout in inference."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import constant

SCALAR_ATTRIBUTES = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                     "value_ints": np.int64}


def _check_constant(node: ir.Node) -> str:
    names = set(node.attributes)
    return "" if names & ({"value"} | set(SCALAR_ATTRIBUTES)) else f"Constant with {', '.join(sorted(names))}"


@lowers("Constant", check=_check_constant)
def constant_node(lowering: Lowering, node: ir.Node) -> None:
    attribute = next(a for a in node.attributes.values() if a.name == "value" or a.name in SCALAR_ATTRIBUTES)
    data = attribute.as_tensor().numpy() if attribute.name == "value" else \
        np.asarray(attribute.value, SCALAR_ATTRIBUTES[attribute.name])
    out = node.outputs[0]
    lowering.refs[out] = Ref(lowering.constant(out.name, data), tuple(range(data.ndim)))


@lowers("ConstantOfShape")
def constant_of_shape(lowering: Lowering, node: ir.Node) -> None:
    """The output's static shape filled with the value (a float32 zero by default)."""
    out = node.outputs[0]
    attribute = node.attributes.get("value")
    fill = attribute.as_tensor().numpy().reshape(-1)[0] if attribute is not None else np.float32(0)
    shape = lowering.shape(out)
    lowering.refs[out] = Ref(lowering.constant(out.name, np.full(shape, fill, dtypes.of(out))),
                             tuple(range(len(shape))))


def _dropout_is_identity(node: ir.Node) -> bool:
    """Inference, or training with a constant ratio of 0: the output is the input and the mask all true."""
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is None or (constant(training) is not None and not constant(training).any()):
        return True
    ratio = node.inputs[1] if len(node.inputs) > 1 else None
    return constant(training) is not None and ratio is not None and constant(ratio) is not None \
        and float(constant(ratio)) == 0.0


def _check_dropout(node: ir.Node) -> str:
    return "" if _dropout_is_identity(node) else "training-mode Dropout is random: export the model in eval mode"


@lowers("Dropout", check=_check_dropout)
def dropout(lowering: Lowering, node: ir.Node) -> None:
    lowering.refs[node.outputs[0]] = lowering.ref(node.inputs[0])
    if len(node.outputs) > 1 and node.outputs[1] is not None:
        mask = node.outputs[1]
        shape = lowering.shape(mask)
        lowering.refs[mask] = Ref(lowering.constant(mask.name, np.ones(shape, bool)), tuple(range(len(shape))))
