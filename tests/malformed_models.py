"""A catalogue of malformed and hostile ONNX files, each made from scratch or from the trained digits CNN.

Every entry writes one file into a folder and returns its path; `CASES` maps a case's name to its maker.
The hostile-input tests build each one and assert the documented exit code (never 1, edgec's bug).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DIGITS = Path(__file__).resolve().parents[1] / "models" / "digits" / "digits_cnn.onnx"
OPSET = 17


def _io(name: str, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _model(nodes, inputs, outputs, initializers=(), opset=OPSET, ir_version=8, domain_opsets=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, v) for d, v in domain_opsets]]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir_version
    return model


def _relu(shape=(1, 4), **kwargs) -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_io("x", shape)], [_io("y", shape)], **kwargs)


def _save(model: onnx.ModelProto, folder: Path, name: str) -> Path:
    path = folder / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _digits() -> onnx.ModelProto:
    return onnx.load(DIGITS)


def cycle(folder):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2")]
    return _save(_model(nodes, [_io("x", [1, 4])], [_io("a", [1, 4])]), folder, "cycle")


def self_loop(folder):
    nodes = [helper.make_node("Add", ["x", "y"], ["y"], name="n")]
    return _save(_model(nodes, [_io("x", [1, 4])], [_io("y", [1, 4])]), folder, "self_loop")


def missing_input(folder):
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="n")]
    return _save(_model(nodes, [_io("x", [1, 4])], [_io("y", [1, 4])]), folder, "missing_input")


def output_never_computed(folder):
    model = _relu()
    model.graph.output.append(_io("nowhere", [1]))
    return _save(model, folder, "output_never_computed")


def short_initializer(folder):
    model = _digits()
    tensor = next(t for t in model.graph.initializer if t.HasField("raw_data") and len(t.raw_data) > 16)
    tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]
    return _save(model, folder, "short_initializer")


def long_initializer(folder):
    model = _digits()
    tensor = next(t for t in model.graph.initializer if t.HasField("raw_data") and len(t.raw_data) > 16)
    tensor.raw_data = tensor.raw_data + b"\0" * 8
    return _save(model, folder, "long_initializer")


def huge_initializer_claim(folder):
    weight = numpy_helper.from_array(np.ones(4, np.float32), "w")
    weight.dims[:] = [1_000_000_000]
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="n")]
    return _save(_model(nodes, [_io("x", [1])], [_io("y", [1])], [weight]), folder, "huge_initializer_claim")


def opset_1(folder):
    return _save(_relu(opset=1), folder, "opset_1")


def opset_99(folder):
    return _save(_relu(opset=99), folder, "opset_99")


def ir_version_99(folder):
    return _save(_relu(ir_version=99), folder, "ir_version_99")


def ir_version_0(folder):
    return _save(_relu(ir_version=0), folder, "ir_version_0")


def unknown_op(folder):
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"], name="n")]
    return _save(_model(nodes, [_io("x", [1, 4])], [_io("y", [1, 4])]), folder, "unknown_op")


def unknown_domain(folder):
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"], name="n", domain="com.evil")]
    model = _model(nodes, [_io("x", [1, 4])], [_io("y", [1, 4])], domain_opsets=[("com.evil", 1)])
    return _save(model, folder, "unknown_domain")


def output_is_input(folder):
    model = _relu()
    model.graph.output.append(_io("x", [1, 4]))
    return _save(model, folder, "output_is_input")


def duplicate_node_outputs(folder):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Neg", ["x"], ["y"], name="b")]
    return _save(_model(nodes, [_io("x", [1, 4])], [_io("y", [1, 4])]), folder, "duplicate_node_outputs")


def duplicate_initializers(folder):
    w = numpy_helper.from_array(np.ones((1, 4), np.float32), "w")
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="n")]
    return _save(_model(nodes, [_io("x", [1, 4])], [_io("y", [1, 4])], [w, w]), folder, "duplicate_initializers")


def duplicate_inputs(folder):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="n")]
    return _save(_model(nodes, [_io("x", [1, 4]), _io("x", [1, 4])], [_io("y", [1, 4])]), folder, "duplicate_inputs")


def non_utf8_name(folder):
    data = _relu().SerializeToString().replace(b"relu", b"\xff\xfe\xfd\xfc")
    path = folder / "non_utf8_name.onnx"
    path.write_bytes(data)
    return path


def no_inputs(folder):
    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(4, np.float32)), name="c")
    nodes = [const, helper.make_node("Relu", ["c"], ["y"], name="n")]
    return _save(_model(nodes, [], [_io("y", [4])]), folder, "no_inputs")


def no_nodes(folder):
    return _save(_model([], [_io("x", [1])], [_io("x", [1])]), folder, "no_nodes")


def dim_zero(folder):
    return _save(_relu(shape=(0, 4)), folder, "dim_zero")


def dim_negative(folder):
    return _save(_relu(shape=(-3, 4)), folder, "dim_negative")


def dim_1e9(folder):
    return _save(_relu(shape=(1, 1_000_000_000)), folder, "dim_1e9")


def dims_overflow(folder):
    return _save(_relu(shape=(1 << 40, 1 << 40)), folder, "dims_overflow")


def empty_file(folder):
    path = folder / "empty.onnx"
    path.write_bytes(b"")
    return path


def garbage(folder):
    path = folder / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def truncated(folder):
    path = folder / "truncated.onnx"
    path.write_bytes(DIGITS.read_bytes()[: DIGITS.stat().st_size // 2])
    return path


def flipped_bytes(folder):
    data = bytearray(DIGITS.read_bytes())
    for index in range(10, 400, 7):
        data[index] ^= 0xFF
    path = folder / "flipped_bytes.onnx"
    path.write_bytes(bytes(data))
    return path


def text_file(folder):
    path = folder / "notes.onnx"
    path.write_text("ir_version: 8\ngraph { node { op_type: 'Relu' } }\n")
    return path


def a_folder(folder):
    path = folder / "folder.onnx"
    path.mkdir()
    return path


def unreadable(folder):
    path = folder / "unreadable.onnx"
    path.write_bytes(DIGITS.read_bytes())
    path.chmod(0)
    return path


def dangling_symlink(folder):
    path = folder / "dangling.onnx"
    path.symlink_to(folder / "gone.onnx")
    return path


def wrong_attribute_type(folder):
    node = helper.make_node("Softmax", ["x"], ["y"], name="n", axis="one")
    return _save(_model([node], [_io("x", [1, 4])], [_io("y", [1, 4])]), folder, "wrong_attribute_type")


def missing_required_attribute(folder):
    node = helper.make_node("Transpose", ["x"], ["y"], name="n", perm=[0, 1, 2, 3, 4, 5])
    return _save(_model([node], [_io("x", [1, 4])], [_io("y", [4, 1])]), folder, "bad_attribute_value")


def wrong_input_count(folder):
    node = helper.make_node("Relu", ["x", "x"], ["y"], name="n")
    return _save(_model([node], [_io("x", [1, 4])], [_io("y", [1, 4])]), folder, "wrong_input_count")


def type_mismatch(folder):
    node = helper.make_node("Add", ["x", "i"], ["y"], name="n")
    model = _model([node], [_io("x", [1, 4]), _io("i", [1, 4], TensorProto.INT64)], [_io("y", [1, 4])])
    return _save(model, folder, "type_mismatch")


def shape_mismatch(folder):
    w = numpy_helper.from_array(np.ones((5, 3), np.float32), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="n")
    return _save(_model([node], [_io("x", [1, 4])], [_io("y", [1, 3])], [w]), folder, "shape_mismatch")


def _external(folder: Path, name: str, location: str) -> Path:
    """The digits CNN with one weight moved to external data at `location` (which holds nothing of it)."""
    model = _digits()
    tensor = next(t for t in model.graph.initializer if t.HasField("raw_data") and len(t.raw_data) > 16)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    return _save(model, folder, name)


def external_data_outside(folder):
    return _external(folder, "external_data_outside", "../../../../../../etc/passwd")


def external_data_absolute(folder):
    return _external(folder, "external_data_absolute", "/etc/passwd")


def external_data_missing(folder):
    return _external(folder, "external_data_missing", "weights.bin")


def subgraph_missing_input(folder):
    body = helper.make_graph([helper.make_node("Add", ["x", "ghost"], ["t"], name="inner")], "then", [],
                             [_io("t", [1, 4])])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["e"], name="inner2")], "else", [], [_io("e", [1, 4])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=other, name="if")
    model = _model([node], [_io("x", [1, 4]), _io("c", [], TensorProto.BOOL)], [_io("y", [1, 4])])
    return _save(model, folder, "subgraph_missing_input")


CASES: dict[str, Callable[[Path], Path]] = {
    f.__name__: f for f in [
        cycle, self_loop, missing_input, output_never_computed, short_initializer, long_initializer,
        huge_initializer_claim, opset_1, opset_99, ir_version_99, ir_version_0, unknown_op, unknown_domain,
        output_is_input, duplicate_node_outputs, duplicate_initializers, duplicate_inputs, non_utf8_name, no_inputs,
        no_nodes, dim_negative, dim_1e9, dims_overflow, empty_file, garbage, truncated, flipped_bytes,
        text_file, a_folder, unreadable, dangling_symlink, wrong_attribute_type, missing_required_attribute,
        wrong_input_count, type_mismatch, shape_mismatch, external_data_outside, external_data_absolute,
        external_data_missing, subgraph_missing_input,
    ]
}
