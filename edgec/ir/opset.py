"""Opset upgrades with onnx's version converter, for stages that need a newer operator set.

Per-channel int8 needs DequantizeLinear's `axis` attribute, which exists from opset 13; an
opset-11 model quantized as it is fails inside onnxruntime's quantizer.
"""
from __future__ import annotations

import logging

import onnx_ir as ir

logger = logging.getLogger(__name__)


def default_opset(model: ir.Model) -> int:
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))


def upgrade(model: ir.Model, minimum: int) -> ir.Model | None:
    """The model converted to opset `minimum`, itself if it already is at least that, or None
    when the converter cannot convert it."""
    if default_opset(model) >= minimum:
        return model
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(ir.to_proto(model), minimum)
        return ir.from_proto(converted)
    except Exception as exc:  # the converter has no adapter for some operator
        logger.info("opset %d -> %d conversion failed: %s", default_opset(model), minimum, exc)
        return None
