"""Models whose inputs are not one image batch: index inputs, scalars, a second activation, recurrent state.

Samples, calibration, verify and infer follow each input's own shape, dtype and role (package/samples.py,
package/harness/interface.py); infer takes one run, stacked runs, or samples along a shared batch axis.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

from conftest import edgec, harness, infer, manifest

RNG = np.random.default_rng(3)


def save(tmp_path, text: str, **initializers) -> str:
    proto = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n' + text)
    proto.graph.initializer.extend(onnx.numpy_helper.from_array(v, k) for k, v in initializers.items())
    path = tmp_path / "model.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(proto, strict_mode=True), path)
    return str(path)


@pytest.fixture(scope="module")
def lookup_model(tmp_path_factory):
    """An embedding lookup (int64 ids), a scalar scale, and a MatMul with a second activation input."""
    folder = tmp_path_factory.mktemp("lookup")
    return save(folder, "g (int64[3] ids, float scale, float[4, 2] w) => (float[3, 4] y, float[3, 2] z) "
                        "{ e = Gather (table, ids) \n y = Mul (e, scale) \n z = MatMul (e, w) }",
                table=RNG.standard_normal((10, 4)).astype(np.float32))


def reference(ids, scale, w, table):
    e = table[ids]
    return e * scale, e @ w


@pytest.mark.parametrize("target, precision, extra", [
    ("onnxruntime", "fp32", []),
    ("openvino-cpu", "fp32", []),
    ("onnxruntime", "int8", ["--calibration", "random"]),
])
def test_index_scalar_and_matmul_inputs_build_verify_and_infer(lookup_model, tmp_path, target, precision, extra):
    out = tmp_path / "art"
    edgec("build", lookup_model, "-t", target, "--precision", precision, *extra, "-o", out, check=True)
    m = manifest(out)
    assert m["verification"]["result"]["passed"] and all(s["batch_axis"] is None for s in m["inputs"])
    samples = np.load(out / "samples" / "inputs.npz")
    assert samples["ids"].dtype == np.int64 and 0 <= samples["ids"].min() and samples["ids"].max() < 10
    assert samples["scale"].shape == (8,) and samples["w"].shape == (8, 4, 2)
    assert harness(out, "verify").returncode == 0

    table = onnx.numpy_helper.to_array(onnx.load(lookup_model).graph.initializer[0])
    ids, scale, w = np.array([[1, 9, 0], [4, 4, 2]]), np.array([2.0, -1.0], np.float32), \
        RNG.standard_normal((2, 4, 2)).astype(np.float32)
    stacked = infer(out, {"ids": ids, "scale": scale, "w": w}, tmp_path)
    single = infer(out, {"ids": ids[1], "scale": scale[1], "w": w[1]}, tmp_path)
    assert stacked["y"].shape == (2, 3, 4) and single["y"].shape == (3, 4)
    tolerance = 1e-5 if precision == "fp32" else 0.25 * float(np.ptp(stacked["z"]))
    for i in range(2):
        y, z = reference(ids[i], scale[i], w[i], table)
        np.testing.assert_allclose(stacked["y"][i], y, atol=tolerance)
        np.testing.assert_allclose(stacked["z"][i], z, atol=tolerance)
    np.testing.assert_array_equal(single["z"], stacked["z"][1])


def test_recurrent_state_batches_along_its_own_axis(tmp_path):
    """An RNN whose batch is axis 1 of its input and state: samples concatenate along that axis."""
    hidden, feature = 5, 3
    path = save(tmp_path, "g (float[7, batch, 3] x, int32[batch] lens, float[1, batch, 5] h0) => "
                          "(float[7, 1, batch, 5] y, float[1, batch, 5] y_h) "
                          "{ y, y_h = RNN <hidden_size=5> (x, w, r, b, lens, h0) }",
                w=(RNG.standard_normal((1, hidden, feature)) * 0.3).astype(np.float32),
                r=(RNG.standard_normal((1, hidden, hidden)) * 0.3).astype(np.float32),
                b=np.zeros((1, 2 * hidden), np.float32))
    out = tmp_path / "rnn"
    edgec("build", path, "-o", out, check=True)
    m = manifest(out)
    assert {s["name"]: s["batch_axis"] for s in m["inputs"] + m["outputs"]} == {
        "x": 1, "lens": 0, "h0": 1, "y": 2, "y_h": 1}
    x = RNG.standard_normal((7, 6, feature)).astype(np.float32)
    lens = np.array([7, 3, 7, 1, 5, 7], np.int32)
    h0 = RNG.standard_normal((1, 6, hidden)).astype(np.float32)
    together = infer(out, {"x": x, "lens": lens, "h0": h0}, tmp_path)
    assert together["y"].shape == (7, 1, 6, hidden) and together["y_h"].shape == (1, 6, hidden)
    alone = infer(out, {"x": x[:, 3:4], "lens": lens[3:4], "h0": h0[:, 3:4]}, tmp_path)
    np.testing.assert_allclose(alone["y_h"][:, 0], together["y_h"][:, 3], atol=1e-6)


def test_a_parameter_input_needs_the_users_samples(tmp_path):
    """Summing [3, 3] to [3] may run over either axis: the shapes do not say which."""
    path = save(tmp_path, "g (float[3, 3] x, int64[1] axes) => (float[3] y) { y = ReduceSum <keepdims=0> (x, axes) }")
    proc = edgec("build", path, "-o", tmp_path / "no")
    lines = [line for line in proc.stderr.splitlines() if line.strip() and line.startswith("edgec:")]
    assert proc.returncode == 2 and len(lines) == 1
    assert "input 'axes' is ReduceSum's axes" in lines[0] and "--samples FILE.npz" in lines[0]
    np.savez(tmp_path / "samples.npz", x=RNG.standard_normal((3, 3, 3)).astype(np.float32), axes=np.ones((3, 1), np.int64))
    edgec("build", path, "--samples", tmp_path / "samples.npz", "-o", tmp_path / "yes", check=True)
    assert manifest(tmp_path / "yes")["samples"]["count"] == 3
