"""One-sample feeds run in batches (edgec/ir/runtime.py run_each), as the calibration pass and the held-back
judge run them: each feed's outputs are those of its lone run, bit for bit, and where the model cannot take
a batch the feeds run one by one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
import pytest

from edgec.ir import runtime

DIGITS = Path(__file__).resolve().parents[2] / "models" / "digits"


class _Counted:
    """A real onnxruntime session that counts its runs."""

    def __init__(self, session):
        self.session, self.runs = session, 0

    def run(self, names, feed, options=None):
        self.runs += 1
        return self.session.run(names, feed, options)

    def get_outputs(self):
        return self.session.get_outputs()


def _digits_with_one_sample(reshape_to: list[int], summed_over_axis_0: bool = False,
                            scaled_by_constant: bool = False) -> ir.Model:
    """The digits CNN as a build leaves it, its batch fixed to 1, with its Flatten as a Reshape to a
    constant shape and that Reshape's output appended as a second output (or its cumulative sum along
    axis 0: a sample's own features alone, a running sum over the samples of a batch; or scaled by a
    constant reshaped to [1, 64], as a detector's anchor grid: that Reshape stays)."""
    model = ir.load(DIGITS / "digits_cnn.onnx")
    model.graph.inputs[0].shape = ir.Shape([1, 1, 8, 8])
    flatten = next(node for node in model.graph if node.op_type == "Flatten")
    shape = ir.Value(name="flat_shape", const_value=ir.tensor(np.array(reshape_to, np.int64), name="flat_shape"))
    model.graph.register_initializer(shape)
    flat = ir.Value(name="flat")
    reshape = ir.Node("", "Reshape", [flatten.inputs[0], shape], outputs=[flat], name="flat")
    model.graph.insert_before(flatten, reshape)
    if scaled_by_constant:
        grid = ir.Value(name="grid", const_value=ir.tensor(np.linspace(0.5, 2, 64, dtype=np.float32), name="grid"))
        model.graph.register_initializer(grid)
        grid_shape = ir.Value(name="grid_shape", const_value=ir.tensor(np.array([1, 64], np.int64), name="grid_shape"))
        model.graph.register_initializer(grid_shape)
        row, scaled = ir.Value(name="grid_row"), ir.Value(name="scaled")
        model.graph.insert_after(reshape, [ir.Node("", "Reshape", [grid, grid_shape], outputs=[row], name="grid_row"),
                                           ir.Node("", "Mul", [flat, row], outputs=[scaled], name="scaled")])
        flat = scaled
    if summed_over_axis_0:
        axis = ir.Value(name="axis0", const_value=ir.tensor(np.array(0, np.int64), name="axis0"))
        model.graph.register_initializer(axis)
        summed = ir.Value(name="summed")
        model.graph.insert_after(reshape, ir.Node("", "CumSum", [flat, axis], outputs=[summed], name="summed"))
        flat = summed
    model.graph.outputs.append(flat)
    common.ShapeInferencePass()(model)  # the shapes a build's passes give every value
    return model


def _feeds(count: int) -> list[dict]:
    with np.load(DIGITS / "split.npz") as split:
        images = split["x_calib"][:count]
    return [{"input": images[i:i + 1]} for i in range(count)]


def _each_alone(model: ir.Model, feeds: list[dict]) -> list[list[np.ndarray]]:
    session = runtime.session(model)
    return [session.run(None, feed) for feed in feeds]


@pytest.mark.parametrize("scaled_by_constant", [False, True])
def test_batches_give_each_feeds_lone_outputs_in_fewer_runs(scaled_by_constant):
    model, feeds = _digits_with_one_sample([1, 64], scaled_by_constant=scaled_by_constant), _feeds(40)
    counted = _Counted(runtime.session(model, batches=True))
    batched = list(runtime.run_each(counted, feeds, runtime.input_free(model)))
    alone = _each_alone(model, feeds)
    assert len(batched) == len(feeds)
    assert all(np.array_equal(a, b) for got, want in zip(batched, alone) for a, b in zip(got, want))
    assert all(out.shape == want.shape for got, want_run in zip(batched, alone) for out, want in zip(got, want_run))
    assert counted.runs < len(feeds) // 4  # the first lone run, then batches


def test_a_qdq_graph_batches_through_its_quantize_dequantize_pairs():
    """A QDQ graph's DequantizeLinear outputs have no shape inferred (onnxruntime's quantizer writes none):
    the Reshape they feed still frees its batch, as the float Reshape does."""
    model, feeds = _digits_with_one_sample([1, 64]), _feeds(40)
    reshape = next(node for node in model.graph if node.name == "flat")
    scale = ir.Value(name="q_scale", const_value=ir.tensor(np.array(0.05, np.float32), name="q_scale"))
    zero = ir.Value(name="q_zero", const_value=ir.tensor(np.array(0, np.int8), name="q_zero"))
    model.graph.register_initializer(scale)
    model.graph.register_initializer(zero)
    quantized, dequantized = ir.Value(name="q"), ir.Value(name="dq")  # no shapes, as the quantizer leaves them
    pair = [ir.Node("", "QuantizeLinear", [reshape.inputs[0], scale, zero], outputs=[quantized], name="q"),
            ir.Node("", "DequantizeLinear", [quantized, scale, zero], outputs=[dequantized], name="dq")]
    model.graph.insert_before(reshape, pair)
    reshape.replace_input_with(0, dequantized)
    counted = _Counted(runtime.session(model, batches=True))
    batched = list(runtime.run_each(counted, feeds, runtime.input_free(model)))
    alone = _each_alone(model, feeds)
    assert all(np.array_equal(a, b) for got, want in zip(batched, alone) for a, b in zip(got, want))
    assert counted.runs < len(feeds) // 4


def test_a_model_that_folds_its_batch_away_runs_each_feed_alone():
    model, feeds = _digits_with_one_sample([-1]), _feeds(12)  # one sample's 64 features, no batch axis
    counted = _Counted(runtime.session(model, batches=True))
    batched = list(runtime.run_each(counted, feeds, runtime.input_free(model)))
    alone = _each_alone(model, feeds)
    assert all(np.array_equal(a, b) for got, want in zip(batched, alone) for a, b in zip(got, want))
    assert counted.runs == len(feeds)


def test_a_model_that_mixes_samples_along_axis_0_runs_each_feed_alone():
    model, feeds = _digits_with_one_sample([1, 64], summed_over_axis_0=True), _feeds(12)
    counted = _Counted(runtime.session(model, batches=True))
    batched = list(runtime.run_each(counted, feeds, runtime.input_free(model)))
    alone = _each_alone(model, feeds)
    assert all(np.array_equal(a, b) for got, want in zip(batched, alone) for a, b in zip(got, want))
    assert counted.runs == len(feeds) + 1  # the first batch, whose last row is not its lone run
