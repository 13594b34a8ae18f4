"""Task-level fidelity: the measure each model's users judge it by, comparing a build's outputs with the
original model's on the same real inputs.

A `Fidelity` scores a candidate built at some precision against the reference in [0, 1], higher is better,
and carries the bar an fp32 build must reach. Outputs are dicts keyed by output name with the samples along
each output's batch axis (as `CorpusModel.batch_axis` says).

A reduced precision is held to its own tolerances (package/policy.py), never looser ones: a class whose
fp32 probability is within twice the precision's probability error of fp32's best is a tie (each of the two
may move by that error and stay within it), so the candidate choosing it agrees; landmarks are held to the
precision's pixel error for coordinates. fp32 has no ties. On FER's 16 faces int8 flips two rows, where
fp32's best leads by 0.012 and 0.007: coin tosses, not damage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Fidelity:
    measure: str  # what is compared, in the words the model's users would use
    score: Callable[[Outputs, Outputs, str], float]  # (reference, candidate, its precision) -> [0, 1], higher is better
    bar: float  # what an fp32 build must reach


def tie_margin(precision: str) -> float:
    """How far below fp32's best class a class may be and still tie with it at `precision`: twice the
    precision's own probability error (the verification policy's), 0 in fp32."""
    from edgec.package import policy

    return 0.0 if precision == "fp32" else 2 * policy.LIMITS["probabilities"][precision]["max_abs_err"]


def _tied_best(ref: np.ndarray, out: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray]:
    """The best class of each row of the reference and of the candidate, the reference's read as the
    candidate's where that class ties with it (tie_margin)."""
    from edgec.package.harness.compare import distribution

    ref_best, out_best = ref.argmax(-1), out.argmax(-1)
    probabilities = distribution(ref.astype(np.float64))
    best = np.take_along_axis(probabilities, ref_best[..., None], -1)[..., 0]
    chosen = np.take_along_axis(probabilities, out_best[..., None], -1)[..., 0]
    return np.where(best - chosen < tie_margin(precision), out_best, ref_best), out_best


# ---------------------------------------------------------------- classifiers and embeddings

def top1(output: str) -> Fidelity:
    def score(ref: Outputs, out: Outputs, precision: str = "fp32") -> float:
        expected, got = _tied_best(ref[output], out[output], precision)
        return float(np.mean(expected == got))
    return Fidelity(f"top-1 agreement, ties at the precision's error agreeing ({output})", score, 1.0)


def cosine(output: str) -> Fidelity:
    def score(ref: Outputs, out: Outputs, precision: str = "fp32") -> float:
        a, b = ref[output].reshape(len(ref[output]), -1), out[output].reshape(len(out[output]), -1)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        return float(cos.min())
    return Fidelity(f"min cosine similarity ({output})", score, 0.9999)


# ---------------------------------------------------------------- sequences

def ctc_greedy(best: np.ndarray, blank: int) -> tuple[int, ...]:
    """Best-path CTC decoding of each step's best class [time]: collapse repeats, drop blanks."""
    keep = np.concatenate([[True], best[1:] != best[:-1]]) & (best != blank)
    return tuple(int(i) for i in best[keep])


def ctc_strings(output: str, batch_axis: int, blank: int) -> Fidelity:
    """Fraction of samples whose greedy-decoded label sequence equals the reference's, a step's tied classes
    (tie_margin) read as the candidate reads them."""
    def score(ref: Outputs, out: Outputs, precision: str = "fp32") -> float:
        expected, got = _tied_best(np.moveaxis(ref[output], batch_axis, 0), np.moveaxis(out[output], batch_axis, 0),
                                   precision)
        return float(np.mean([ctc_greedy(x, blank) == ctc_greedy(y, blank) for x, y in zip(expected, got)]))
    return Fidelity(f"decoded strings equal, ties at the precision's error agreeing ({output})", score, 1.0)


# ---------------------------------------------------------------- audio

def crepe_cents(probabilities: np.ndarray) -> np.ndarray:
    """torchcrepe's weighted-argmax decoding: 9 bins around the peak, 20 cents a bin."""
    peak = probabilities.argmax(-1)
    bins = np.arange(probabilities.shape[-1])
    window = np.abs(bins[None] - peak[:, None]) <= 4
    weights = probabilities * window
    cents = 20.0 * bins + 1997.3794084376191
    return (weights * cents).sum(-1) / np.maximum(weights.sum(-1), 1e-12)


def pitch_cents(output: str, tolerance_cents: float = 10.0) -> Fidelity:
    def score(ref: Outputs, out: Outputs, precision: str = "fp32") -> float:
        return float(np.mean(np.abs(crepe_cents(ref[output]) - crepe_cents(out[output])) <= tolerance_cents))
    return Fidelity(f"frames with pitch within {tolerance_cents:g} cents ({output})", score, 1.0)


def binary_f1(outputs: tuple[str, ...], threshold: float) -> Fidelity:
    """F1 of thresholded activations (basic-pitch's notes and onsets) against the reference's."""
    def score(ref: Outputs, out: Outputs, precision: str = "fp32") -> float:
        a = np.concatenate([ref[o].ravel() > threshold for o in outputs])
        b = np.concatenate([out[o].ravel() > threshold for o in outputs])
        return _f1(int((a & b).sum()), int(b.sum()), int(a.sum()))
    return Fidelity(f"note/onset F1 at {threshold} ({', '.join(outputs)})", score, 0.999)


def _f1(hits: int, predicted: int, actual: int) -> float:
    if predicted == actual == 0:
        return 1.0
    return 2 * hits / (predicted + actual)


# ---------------------------------------------------------------- images

def mask_iou(output: str, threshold: float) -> Fidelity:
    def score(ref: Outputs, out: Outputs, precision: str = "fp32") -> float:
        a, b = ref[output] > threshold, out[output] > threshold
        union = (a | b).sum()
        return float((a & b).sum() / union) if union else 1.0
    return Fidelity(f"mask IoU at {threshold} ({output})", score, 0.999)


def landmarks(output: str) -> Fidelity:
    """Fraction of faces whose landmarks are on average within the precision's pixel error of the
    reference's: the verification policy's for coordinates (1 px in fp16, 2 in int8), 1 px in fp32."""
    from edgec.package import policy

    def score(ref: Outputs, out: Outputs, precision: str = "fp32") -> float:
        pixels = policy.LIMITS["boxes"].get(precision, {"box_err": 1.0})["box_err"]
        a = ref[output].reshape(len(ref[output]), -1, 3)[..., :2]
        b = out[output].reshape(len(out[output]), -1, 3)[..., :2]
        return float(np.mean(np.linalg.norm(a - b, axis=-1).mean(-1) <= pixels))
    return Fidelity(f"faces with mean landmark error within the precision's pixel error ({output})", score, 1.0)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [n, 4] with every box in b [m, 4], corners (x1, y1, x2, y2)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    order, keep = scores.argsort()[::-1], []
    while order.size:
        keep.append(order[0])
        order = order[1:][iou(boxes[order[:1]], boxes[order[1:]])[0] <= threshold]
    return boxes[keep]


def box_f1(decode: Callable[[Outputs], list[np.ndarray]], name: str) -> Fidelity:
    """Detection F1 at IoU 0.5 against the reference's detections, greedy one-to-one matching."""
    def score(ref: Outputs, out: Outputs, precision: str = "fp32") -> float:
        hits = predicted = actual = 0
        for a, b in zip(decode(ref), decode(out)):
            predicted, actual = predicted + len(b), actual + len(a)
            if len(a) and len(b):
                overlap = iou(a, b)
                while overlap.size and overlap.max() >= 0.5:
                    i, j = np.unravel_index(overlap.argmax(), overlap.shape)
                    hits += 1
                    overlap[i, :], overlap[:, j] = -1, -1
        return _f1(hits, predicted, actual)
    return Fidelity(f"box F1 at IoU 0.5 ({name})", score, 1.0)


def yolox_boxes(output: str, score_threshold: float = 0.1, nms_threshold: float = 0.45):
    """ddddocr's post-processing of decoded YOLOX rows (cx, cy, w, h, objectness, class scores)."""
    def decode(outputs: Outputs) -> list[np.ndarray]:
        result = []
        for rows in outputs[output]:
            scores = rows[:, 4:5] * rows[:, 5:]
            best = scores.max(1)
            rows = rows[best > score_threshold]
            corners = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], 1)
            result.append(nms(corners, best[best > score_threshold], nms_threshold))
        return result
    return decode


def blazeface_anchors() -> np.ndarray:
    """MediaPipe's SSD anchors for the 128x128 short-range face detector: [896, 2] centres in [0, 1]."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cell = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(cell, per_cell, 1).reshape(-1, 2))
    return np.concatenate(centres)


def blazeface_boxes(regressors: str, scores: str, score_threshold: float = 0.5, nms_threshold: float = 0.3):
    anchors = blazeface_anchors() * 128

    def decode(outputs: Outputs) -> list[np.ndarray]:
        result = []
        for reg, logit in zip(outputs[regressors], outputs[scores]):
            confidence = 1 / (1 + np.exp(-np.clip(logit[:, 0].astype(np.float64), -100, 100)))  # MediaPipe clips at 100
            centre = reg[:, :2] + anchors
            corners = np.concatenate([centre - reg[:, 2:4] / 2, centre + reg[:, 2:4] / 2], 1)
            keep = confidence > score_threshold
            result.append(nms(corners[keep], confidence[keep], nms_threshold))
        return result
    return decode
