"""Mish rewritten without cancellation: what the build gives a target whose own Mish loses precision."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from edgec.passes import lower_for_target


def test_stable_mish_matches_x_tanh_softplus_in_float64_everywhere():
    proto = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 18]>\n'
                                    "g (float[601] x) => (float[601] y) { y = Mish (x) }")
    lowered, warnings = lower_for_target(ir.from_proto(proto), {"Mish"})
    assert warnings == [] and "Mish" not in {n.op_type for n in lowered.graph}
    assert "Constant" not in {n.op_type for n in lowered.graph}  # lifted: a runtime sees initializers
    x = np.linspace(-60, 60, 601).astype(np.float32)
    got = ort.InferenceSession(ir.to_proto(lowered).SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    exact = x.astype(np.float64) * np.tanh(np.logaddexp(0.0, x.astype(np.float64)))
    np.testing.assert_allclose(got, exact, rtol=2e-6, atol=1e-30)  # -17 * e^-17 is -7e-7, not 0
    assert got[x == -17.0][0] < -6e-7


def _peaked_logits(rows: int, classes: int) -> np.ndarray:
    """Logits like an OCR recogniser's: one class far ahead of thousands of small ones."""
    rng = np.random.default_rng(7)
    logits = rng.normal(-8.0, 3.0, (rows, classes)).astype(np.float32)
    logits[np.arange(rows), rng.integers(0, classes, rows)] = 12.0
    return logits


def _run_ort(model: ir.Model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("opset, op, axis", [(13, "Softmax", -1), (18, "LogSoftmax", 1)])
def test_long_softmax_sums_in_float64(opset, op, axis):
    """Over 18,385 classes the lowered form stays within float32's own rounding of float64."""
    proto = onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : {opset}]>\n'
                                    f"g (float[6, 18385] x) => (float[6, 18385] y) {{ y = {op} <axis = {axis}> (x) }}")
    lowered, warnings = lower_for_target(ir.from_proto(proto), {op})
    assert warnings == [] and op not in {n.op_type for n in lowered.graph}
    x = _peaked_logits(6, 18385)
    shifted = x.astype(np.float64) - x.max(-1, keepdims=True)
    exact = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    exact = np.exp(exact) if op == "Softmax" else exact
    np.testing.assert_allclose(_run_ort(lowered, x), exact, rtol=1e-6, atol=1e-6)


def test_short_softmax_is_left_alone():
    proto = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 13]>\n'
                                    "g (float[4, 128] x) => (float[4, 128] y) { y = Softmax (x) }")
    lowered, _ = lower_for_target(ir.from_proto(proto), {"Softmax"})
    assert [n.op_type for n in lowered.graph] == ["Softmax"]
