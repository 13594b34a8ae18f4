"""The artifact's interface: layouts, integer I/O, and the runs arrays of any shape become."""
from __future__ import annotations

import re

import numpy as np
import pytest

from edgec.package.harness import interface
from edgec.package.harness.errors import HarnessError
from edgec.package.harness.manifest import Quantization, TensorSpec

RNG = np.random.default_rng(0)


def spec(name, shape, dtype="float32", batch_axis=None, **kw):
    return TensorSpec(name, shape, dtype, batch_axis=batch_axis, **kw)


# ---- layout and quantization -----------------------------------------------------------------

def test_nhwc_interface_round_trips_to_the_source_layout():
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    s = spec("x", [2, 4, 5, 3], source_perm=[0, 2, 3, 1])
    moved = interface.to_interface({"x": x}, [s], stacked=False)["x"]
    assert moved.shape == (2, 4, 5, 3) and moved[1, 2, 3, 0] == x[1, 0, 2, 3]
    assert np.array_equal(interface.to_source_layout({"x": moved}, [s], stacked=False)["x"], x)
    stacked = interface.to_interface({"x": x[None]}, [s], stacked=True)["x"]  # a leading run axis stays put
    assert np.array_equal(stacked[0], moved)


def test_int8_interface_quantizes_and_saturates():
    s = spec("x", [4], "int8", quantization=Quantization(0.5, -10))
    q = interface.to_interface({"x": np.array([0.0, 1.0, 1000.0, -1000.0])}, [s], stacked=False)["x"]
    assert q.dtype == np.int8 and q.tolist() == [-10, -8, 127, -128]
    assert interface.real_values({"x": q}, [s])["x"].tolist() == [0.0, 1.0, 68.5, -59.0]


def test_uint8_interface_uses_its_own_range():
    s = spec("x", [3], "uint8", quantization=Quantization(1.0, 128))
    assert interface.to_interface({"x": np.array([-200.0, 0.0, 200.0])}, [s], False)["x"].tolist() == [0, 128, 255]


def test_outputs_keep_real_values():
    s = spec("y", [2], "int8", quantization=Quantization(0.1, 0))
    assert interface.to_interface({"y": np.array([0.25, -0.5])}, [s], False, quantized=False)["y"].tolist() == [0.25, -0.5]


# ---- batch axes -----------------------------------------------------------------------------

def test_a_shared_symbol_is_the_batch_wherever_it_sits():
    x, h0 = spec("x", [5, "batch", 3]), spec("h0", [1, "batch", 4])
    y, yh = spec("y", [5, 1, "batch", 4]), spec("y_h", [1, "batch", 4])
    assert interface.find_batch_axes([x, h0], [y, yh]) == {"x": 1, "h0": 1, "y": 2, "y_h": 1}


@pytest.mark.parametrize("inputs, outputs, axes", [
    ([[1, 3, 8, 8]], [[1, 10]], {"i0": 0, "o0": 0}),  # static: axis 0 of the same size everywhere
    ([[3, 4], [4, 5]], [[3, 5]], None),  # MatMul with two activations: no common batch
    ([["n", 4], []], [["n", 4]], None),  # a scalar input has no batch
    ([["n", 4]], [["m", 4]], {"i0": 0, "o0": 0}),  # an exporter's fresh output symbol for the batch (torch: Gemm_dim_0)
    ([[1, 3, "h", "w"]], [["m", 10]], {"i0": 0, "o0": 0}),  # a fixed batch in, the output's batch left symbolic
    ([["n", 4]], [[5, "m"]], None),  # the output's axis 0 is static and not the input's
    ([[2, 3]], [[1, 3]], None),  # reduced over axis 0
    ([[0, 3]], [[0, 3]], None),  # a zero-size batch holds no samples
])
def test_batch_axes(inputs, outputs, axes):
    specs = [spec(f"i{i}", s) for i, s in enumerate(inputs)], [spec(f"o{i}", s) for i, s in enumerate(outputs)]
    assert interface.find_batch_axes(*specs) == axes


# ---- runs -----------------------------------------------------------------------------------

def test_samples_concatenated_along_the_batch_split_in_the_static_batch_size():
    s = spec("x", [2, 3], batch_axis=0)
    runs = interface.split([s], {"x": np.arange(12.0).reshape(4, 3)})
    assert runs.form == interface.BATCHED and len(runs) == 2 and runs.feeds[1]["x"].tolist() == [[6, 7, 8], [9, 10, 11]]
    merged = runs.merge([{"y": f["x"] * 2} for f in runs], [spec("y", [2, 3], batch_axis=0)])
    assert merged["y"].shape == (4, 3)


def test_a_dynamic_batch_runs_at_once_or_as_asked():
    s = spec("x", ["n", 3], batch_axis=0)
    x = np.zeros((6, 3), np.float32)
    assert len(interface.split([s], {"x": x})) == 1
    assert len(interface.split([s], {"x": x}, dynamic_batch=1)) == 6


def test_the_batch_axis_of_each_input_is_its_own():
    specs = [spec("x", [5, "b", 3], batch_axis=1), spec("h", [1, "b", 4], batch_axis=1)]
    runs = interface.split(specs, {"x": np.zeros((5, 4, 3)), "h": np.zeros((1, 4, 4))}, dynamic_batch=2)
    assert len(runs) == 2 and runs.feeds[0]["x"].shape == (5, 2, 3) and runs.feeds[0]["h"].shape == (1, 2, 4)


def test_unbatched_models_take_one_run_or_stacked_runs():
    specs = [spec("a", [3, 4]), spec("k", [], "int64")]
    single = interface.split(specs, {"a": np.zeros((3, 4)), "k": np.array(2)})
    assert single.form == interface.SINGLE and len(single) == 1
    assert single.merge([{"y": np.ones(2)}], [spec("y", [2])])["y"].shape == (2,)
    stacked = interface.split(specs, {"a": np.zeros((5, 3, 4)), "k": np.array([1, 2, 3, 4, 5])})
    assert stacked.form == interface.STACKED and len(stacked) == 5 and stacked.feeds[4]["k"] == 5
    assert stacked.merge([{"y": np.ones(2)}] * 5, [spec("y", [2])])["y"].shape == (5, 2)


@pytest.mark.parametrize("arrays, words", [
    ({"a": np.zeros((3, 4))}, "no array for input(s) ['k']"),
    ({"a": np.zeros((2, 2, 3, 4)), "k": np.array(1)}, "input 'a' has shape [2, 2, 3, 4]"),
    ({"a": np.zeros((2, 3, 4)), "k": np.array(1)}, "same form"),
    ({"a": np.zeros((2, 3, 4)), "k": np.array([1, 2, 3])}, "different numbers of runs"),
    ({"a": np.zeros((3, 4)), "k": np.array(1.5)}, "input 'k' is float64, the model takes int64"),
])
def test_inputs_that_do_not_fit_are_refused_in_one_line(arrays, words):
    with pytest.raises(HarnessError, match=re.escape(words)):
        interface.split([spec("a", [3, 4]), spec("k", [], "int64")], arrays)


def test_batches_that_do_not_divide_are_refused():
    with pytest.raises(HarnessError, match="5 samples do not split into batches of 2"):
        interface.split([spec("x", [2, 3], batch_axis=0)], {"x": np.zeros((5, 3))})


def test_widths_are_cast_and_kinds_are_not():
    s = spec("x", [2])
    assert interface.split([s], {"x": np.zeros(2, np.float64)}).feeds[0]["x"].dtype == np.float32
    with pytest.raises(HarnessError, match="quantized with scale 0.5"):
        interface.cast(spec("x", [2], "int8", quantization=Quantization(0.5, 0)), np.zeros(2, np.float32))


def test_a_run_is_checked_against_static_dimensions():
    interface.check_feed([spec("x", ["n", 3])], {"x": np.zeros((7, 3), np.float32)})
    with pytest.raises(HarnessError, match=r"shape \[7, 4\] per run, expected \[n, 3\]"):
        interface.check_feed([spec("x", ["n", 3])], {"x": np.zeros((7, 4), np.float32)})


def test_npz_files_are_byte_identical_and_never_pickled(tmp_path):
    arrays = {"b": np.arange(3), "a": np.zeros((2, 0))}
    interface.save(tmp_path / "1.npz", arrays)
    interface.save(tmp_path / "2.npz", arrays)
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    assert interface.load(tmp_path / "1.npz")["a"].shape == (2, 0)
    np.save(tmp_path / "one.npy", np.zeros(2))
    with pytest.raises(HarnessError, match="as an .npz of arrays keyed by name"):
        interface.load(tmp_path / "one.npy")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(HarnessError, match="cannot read"):
        interface.load(tmp_path / "objects.npz")


def test_a_zero_dimensional_array_keeps_its_shape_in_an_npz(tmp_path):
    """A scalar output (MatMul of two vectors, Einsum to a scalar) is saved as shape [], not [1]."""
    interface.save(str(tmp_path / "a.npz"), {"scalar": np.float32(2.5) * np.ones(()), "vector": np.ones(3)})
    loaded = interface.load(str(tmp_path / "a.npz"))
    assert loaded["scalar"].shape == () and loaded["scalar"] == 2.5 and loaded["vector"].shape == (3,)


def test_a_batch_fixed_by_input_shape_is_still_found_where_the_outputs_carry_it():
    """A CRNN: image [batch, 3, 60, 160] in, logits [20, batch, 37] out; --input-shape image:1,3,60,160."""
    import onnx
    import onnx_ir as ir

    from edgec import ir as eir
    from edgec.package import samples

    proto = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n'
                                    "g (float[batch,3,60,160] image) => (float[20,batch,37] logits) {\n"
                                    "  r = ReduceMean <axes=[1, 2], keepdims=0> (image)\n"
                                    "  s = Slice (r, zero, twenty, one)\n"
                                    "  t = Unsqueeze (s, ax)\n"
                                    "  logits = Expand (t, shape)\n}")
    model = ir.from_proto(proto)
    eir.apply_input_specs(model, [eir.InputSpec("image", (1, 3, 60, 160))])
    inputs, outputs = samples.model_interface(model)
    assert inputs[0].shape == [1, 3, 60, 160]
    assert (inputs[0].batch_axis, outputs[0].batch_axis) == (0, 1)


def test_a_stale_symbolic_output_shape_is_inferred_again_once_inputs_are_static():
    """An exporter declared the output [1, seqlen] (rank 2) where the graph makes [24, 1, 8210]
    (ddddocr's OCR model); after the input is fixed, the output's shape comes from inference."""
    import onnx
    import onnx_ir as ir
    import onnx_ir.passes.common as common

    from edgec import ir as eir

    proto = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n'
                                    "g (float[batch,6] x) => (float[1,seqlen] y) { y = Reshape (x, shape) }")
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([3, 1, -1]), "shape"))
    model = ir.from_proto(proto)
    eir.resolve_static_shapes(model)
    common.ShapeInferencePass()(model)
    assert list(model.graph.outputs[0].shape) == [3, 1, 2]
