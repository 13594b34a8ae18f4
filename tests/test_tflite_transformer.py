"""A transformer encoder block with all-MiniLM-L6-v2's real weights on tflite-arm, in fp32 and int8.

The block is the model's embeddings (token Gather, position and type embeddings, LayerNorm) and its
first encoder layer (attention with batched MatMul and Softmax, Erf-GELU MLP), exported by torch's
legacy exporter and fed real tokenized sentences (models/corpus). Everything but the embedding lookup
runs in XNNPACK, as the artifact's own delegation report counts it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import edgec, infer, manifest

registry = pytest.importorskip("models.corpus.registry")  # the corpus of real models: `make corpus`
torch = pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

# The integer ops of the embedding lookup, which XNNPACK does not run: the GATHER itself and the FLOOR_MOD
# that wraps negative token ids as ONNX's Gather does (in int8 its table is stored in 8 bits, and XNNPACK
# runs the DEQUANTIZE of the gathered rows).
OUTSIDE_XNNPACK = {"GATHER", "FLOOR_MOD"}


class Block(torch.nn.Module):
    """MiniLM's embeddings and first encoder layer, every token attended (no mask input)."""

    def __init__(self, model):
        super().__init__()
        self.embeddings, self.layer = model.embeddings, model.encoder.layer[0]

    def forward(self, input_ids):
        e = self.embeddings
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        tokens = e.word_embeddings(input_ids) + e.position_embeddings(positions) \
            + e.token_type_embeddings(torch.zeros_like(input_ids))
        return self.layer(e.LayerNorm(tokens), torch.zeros(1, 1, 1, input_ids.shape[1]))


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    from safetensors.torch import load_file

    from models.corpus.nets import MiniLM

    entry = registry.BY_NAME["minilm_l6"]
    weights, config = (source.path for source in entry.sources[:2])
    if not weights.exists():
        pytest.fail("all-MiniLM-L6-v2 is not fetched: run `make corpus`")
    model = MiniLM(json.loads(config.read_text())).eval()
    model.load_state_dict({k: v for k, v in load_file(str(weights)).items()
                           if not k.startswith("pooler.") and k != "embeddings.position_ids"})
    folder = tmp_path_factory.mktemp("minilm-block")
    tokens = entry.load_inputs()["input_ids"]  # [8, 32] real sentences
    with torch.no_grad():
        reference = Block(model).eval()(torch.from_numpy(tokens)).numpy()
        torch.onnx.export(Block(model).eval(), (torch.from_numpy(tokens[:1]),), str(folder / "block.onnx"),
                          input_names=["input_ids"], output_names=["hidden"], opset_version=17, dynamo=False)
    np.savez(folder / "tokens.npz", input_ids=tokens)
    return folder, tokens, reference


def _cosine(a, b):
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_minilm_block_runs_in_xnnpack_but_the_embedding_lookup(block, precision, tmp_path):
    folder, tokens, reference = block
    out = tmp_path / precision
    edgec("build", "--target", "tflite-arm", folder / "block.onnx", "-o", out, "--precision", precision,
          "--calibration", folder / "tokens.npz", check=True)
    m = manifest(out)
    assert m["verification"]["result"]["passed"], m["verification"]
    delegation = m["verification"]["result"]["runtime_checks"]["xnnpack_delegation"]
    assert set(delegation["facts"]["outside_xnnpack"]) <= OUTSIDE_XNNPACK, delegation
    assert {"GATHER", "FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"} <= set(m["backend"]["operators"])
    hidden = np.concatenate([infer(out, {"input_ids": row[None]}, tmp_path)["hidden"] for row in tokens])
    cosine = _cosine(hidden, reference)
    if precision == "fp32":
        assert np.abs(hidden - reference).max() <= 1e-4 * np.ptp(reference)
    else:  # static per-tensor int8 of a BERT layer keeps a 0.86 mean cosine: the hybrid kernels are measured better
        assert m["quantization"]["scheme_choice"]["chosen"] == "dynamic-range"
        assert cosine.mean() >= INT8_COSINE[0] and cosine.min() >= INT8_COSINE[1], (cosine.mean(), cosine.min())


INT8_COSINE = (0.98, 0.95)  # per-token cosine to float, mean and worst
