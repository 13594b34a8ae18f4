"""Sample inputs that follow each input's shape, dtype and role, run through onnxruntime as the build does."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir
import pytest

from edgec.errors import InputError
from edgec.package.samples import model_interface, reference_outputs, sample_inputs


def model(text: str, opset: int = 17) -> ir.Model:
    proto = onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : {opset}]>\n' + text)
    return ir.from_proto(onnx.shape_inference.infer_shapes(proto, strict_mode=True))


def samples(m: ir.Model) -> tuple[dict, dict]:
    """The generated sample runs, and the model's outputs for them (onnxruntime refuses invalid values)."""
    inputs, outputs = model_interface(m)
    arrays = sample_inputs(m, inputs, None)
    return arrays, reference_outputs(m, inputs, outputs, arrays)


def test_indices_stay_within_the_dimension_they_index():
    arrays, out = samples(model("g (float[5, 4] data, int64[3, 2] idx) => (float[5, 3, 2] y) "
                                "{ y = Gather <axis=1> (data, idx) }"))
    assert arrays["idx"].shape == (8, 3, 2) and arrays["idx"].dtype == np.int64
    assert arrays["idx"].min() >= 0 and arrays["idx"].max() < 4 and len(np.unique(arrays["idx"])) > 1
    assert out["y"].shape == (8, 5, 3, 2)


def test_gather_nd_indices_per_component():
    arrays, _ = samples(model("g (float[2, 3, 4] data, int64[5, 2] idx) => (float[5, 4] y) "
                              "{ y = GatherND (data, idx) }"))
    assert arrays["idx"][..., 0].max() < 2 and arrays["idx"][..., 1].max() < 3


def test_shapes_and_k_come_from_the_outputs_static_shapes():
    arrays, out = samples(model("g (float[2, 6] x, int64[3] s, int64[1] k) => (float[3, 2, 2] r, float[2, 4] v, "
                                "int64[2, 4] i) { r = Reshape (x, s) \n v, i = TopK <axis=1> (x, k) }"))
    assert arrays["s"][0].tolist() == [3, 2, 2] and arrays["k"][0].tolist() == [4]
    assert out["r"].shape == (8, 3, 2, 2) and out["i"].max() < 6


def test_recurrent_state_and_sequence_lengths():
    m = model("g (float[7, batch, 3] x, int32[batch] lens, float[1, batch, 5] h0) => "
              "(float[7, 1, batch, 5] y, float[1, batch, 5] y_h) "
              "<float[1, 5, 3] w = {" + ",".join(["0.1"] * 15) + "}, float[1, 5, 5] r = {"
              + ",".join(["0.05"] * 25) + "}, float[1, 10] b = {" + ",".join(["0"] * 10) + "}> "
              "{ y, y_h = RNN <hidden_size=5> (x, w, r, b, lens, h0) }")
    inputs, outputs = model_interface(m)
    assert {s.name: s.batch_axis for s in inputs + outputs} == {"x": 1, "lens": 0, "h0": 1, "y": 2, "y_h": 1}
    arrays, out = samples(m)
    assert arrays["lens"].tolist() == [[7]] * 8 and out["y_h"].shape == (8, 1, 1, 5)


def test_integer_data_is_never_zero_and_variances_are_positive():
    arrays, out = samples(model("g (int32[4] a, int32[4] b, float[2, 3] x, float[3] var) => (int32[4] q, float[2, 3] y)"
                                " <float[3] s = {1, 1, 1}, float[3] o = {0, 0, 0}, float[3] m = {0, 0, 0}>"
                                " { q = Div (a, b) \n y = BatchNormalization (x, s, o, m, var) }"))
    assert arrays["b"].min() >= 1 and arrays["var"].min() > 0 and np.isfinite(out["y"]).all()


def test_scalars_zero_size_and_booleans():
    arrays, out = samples(model("g (float x, bool[3] c, float[0, 2] e) => (float[3] y, float[0, 2] z) "
                                "{ y = Where (c, x, x) \n z = Relu (e) }"))
    assert arrays["x"].shape == (8,) and arrays["c"].dtype == bool and arrays["e"].shape == (8, 0, 2)
    assert out["z"].shape == (8, 0, 2)


def test_axes_pads_and_ranges_that_the_shapes_decide():
    arrays, out = samples(model("g (float[2, 3, 4] x, int64[1] u, int64[2] r, int64[6] p, int64 lo, int64 hi, int64 d)"
                                " => (float[2, 1, 3, 4] y, float[1, 3, 1] m, float[3, 5, 6] q, int64[5] s) "
                                "{ y = Unsqueeze (x, u) \n m = ReduceMax (x, r) \n q = Pad (x, p) \n "
                                "s = Range (lo, hi, d) }", opset=18))
    assert arrays["u"][0].tolist() == [1] and arrays["r"][0].tolist() == [0, 2]
    assert arrays["p"][0].tolist() == [0, 0, 0, 1, 2, 2] and out["q"].shape == (8, 3, 5, 6)
    assert (arrays["lo"][0], arrays["hi"][0], arrays["d"][0]) == (0, 5, 1) and out["s"][0].tolist() == [0, 1, 2, 3, 4]


def test_a_parameter_the_shapes_leave_open_asks_for_the_users_samples():
    with pytest.raises(InputError) as err:  # keepdims=0 over [3, 3] to [3]: axis 0 or 1
        samples(model("g (float[3, 3] x, int64[1] axes) => (float[3] y) { y = ReduceSum <keepdims=0> (x, axes) }"))
    message = str(err.value)
    assert "input 'axes' is ReduceSum's axes" in message and "--samples FILE.npz" in message and "\n" not in message


def test_the_users_samples_come_first():
    from edgec.package.harness import interface

    m = model("g (float[2, 3] x, int64[1] axes) => (float[2, 1, 3] y) { y = Unsqueeze (x, axes) }")
    inputs, outputs = model_interface(m)
    given = interface.split(inputs, {"x": np.ones((3, 2, 3), np.float32), "axes": np.array([[1], [1], [1]])})
    arrays = sample_inputs(m, inputs, given)
    assert arrays["axes"].shape == (3, 1)
    assert reference_outputs(m, inputs, outputs, arrays)["y"].shape == (3, 2, 1, 3)
