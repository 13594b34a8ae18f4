"""Mish rewritten without cancellation: what the build gives a target whose own Mish loses precision."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

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
