"""Expected top-1 agreement (quantize/choose.py): judged on 32 rows, it ranks two int8 graphs of MobileNetV2
as many rows' top-1 agreement does, with less noise than 32 rows' observed agreement."""
from __future__ import annotations

import sys

import numpy as np
import onnx_ir as ir
import pytest

from conftest import MOBILENET
from edgec.ir import runtime
from edgec.quantize.choose import expected_agreement

BLOCK = 32  # the rows a build judges its candidates on (choose.JUDGED_RUNS)


def _crops(count: int) -> np.ndarray:
    """Crops of the bundled photos that the calibration set (seed 0) does not hold."""
    sys.path.insert(0, str(MOBILENET))
    from calibration import photos, random_crop
    from preprocess import normalize

    rng, images = np.random.default_rng(1), photos()
    return normalize(np.stack([random_crop(images[i % len(images)], rng) for i in range(count)]))


def _logits(model: ir.Model, crops: np.ndarray) -> np.ndarray:
    session = runtime.session(model)
    return np.concatenate([session.run(None, {"input": crops[i : i + 1]})[0] for i in range(len(crops))])


def _weights_rounded(path, bits: int) -> ir.Model:
    """MobileNetV2 with every convolution's weights rounded to `bits` per output channel: a quantizer's weight error."""
    model = ir.load(str(path))
    for value in model.graph.initializers.values():
        weights = value.const_value.numpy()
        if weights.ndim == 4:
            step = np.abs(weights).reshape(len(weights), -1).max(1).reshape(-1, 1, 1, 1) / (2 ** (bits - 1) - 1)
            value.const_value = ir.tensor(np.round(weights / step) * step, name=value.name)
    return model


@pytest.fixture(scope="module")
def mobilenet_logits() -> dict[str, np.ndarray]:
    path, crops = MOBILENET / "mobilenet_v2.onnx", _crops(4 * BLOCK)
    return {"fp32": _logits(ir.load(str(path)), crops),
            **{f"{bits}-bit": _logits(_weights_rounded(path, bits), crops) for bits in (8, 7)}}


def test_expected_agreement_ranks_graphs_on_32_rows_as_many_rows_do(mobilenet_logits):
    fp32, finer, coarser = mobilenet_logits["fp32"], mobilenet_logits["8-bit"], mobilenet_logits["7-bit"]
    assert expected_agreement(fp32, fp32) == 100.0

    def top1(out):
        return 100.0 * (fp32.argmax(1) == out.argmax(1)).mean()

    assert top1(finer) - top1(coarser) >= 5  # truly apart, on all 128 rows (11.7 points)
    blocks = [slice(i, i + BLOCK) for i in range(0, len(fp32), BLOCK)]
    expected = np.array([expected_agreement(fp32[b], finer[b]) - expected_agreement(fp32[b], coarser[b]) for b in blocks])
    observed = np.array([100.0 * ((fp32[b].argmax(1) == finer[b].argmax(1)).mean()
                                  - (fp32[b].argmax(1) == coarser[b].argmax(1)).mean()) for b in blocks])
    assert (expected > 0).all()  # every block of 32 rows ranks them right
    assert expected.std() < observed.std()
    assert abs(expected.mean() - (top1(finer) - top1(coarser))) < 4  # 12.1 against 11.7
