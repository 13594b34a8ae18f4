"""Judging outputs against a reference: the policy names the measures that fit what an output means
(probabilities, logits, masks, boxes, sequences, ...) and the limits they must meet; every measure it names is taken.

Outputs arrive stacked, one entry per sample run along the leading axis.
"""
from typing import Callable, Dict

import numpy as np

from .manifest import ComparisonPolicy, Criterion, OutputCheck, OutputPolicy

# Errors below this count as exact: float noise across kernels, not disagreement.
EXACT = 1e-6
MASK_THRESHOLD = 0.5  # a mask pixel is set where its value is above this
BOX_UNIT_SHARE = 0.01  # a box error unit: one pixel, or 1 % of the coordinate range where that is larger
# A row is decisive when its reference's top class leads by this much probability. On MobileNetV2's 64
# calibration crops, int8 (onnxruntime) agrees on 70 % of all rows and on all 36 rows with a 0.2 lead.
DECISIVE_MARGIN = 0.2
CTC_BLANK = 0  # the blank class of a CTC-trained sequence output (PaddleOCR's, ddddocr's, torch's CTCLoss default)


def max_abs_err(got: np.ndarray, ref: np.ndarray) -> float:
    """The largest |got - ref|. Where the reference is NaN or infinite, the same value there is agreement;
    any other NaN makes the error NaN, which fails every limit."""
    if not ref.size:
        return 0.0
    with np.errstate(invalid="ignore"):
        agree = (got == ref) | (np.isnan(got) & np.isnan(ref))
        return float(np.max(np.where(agree, 0.0, np.abs(got - ref))))


def _span(ref: np.ndarray) -> float:
    finite = ref[np.isfinite(ref)]
    return float(finite.max() - finite.min()) if finite.size else 0.0


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """The largest error as a share of the reference's range of finite values (0 when it is within EXACT)."""
    err = max_abs_err(got, ref)
    if err <= EXACT:  # False for NaN, which stays NaN
        return 0.0
    return err / max(_span(ref), 1e-12)


def top1_agreement(got: np.ndarray, ref: np.ndarray) -> float:
    """The share of rows (along the last axis) whose largest entry is the same."""
    return float(np.mean(got.argmax(-1) == ref.argmax(-1))) if ref.size else 1.0


def distribution(ref: np.ndarray) -> np.ndarray:
    """Rows as probabilities: as they are where they already sum to 1, else their softmax (logits)."""
    if ref.min() >= 0 and ref.max() <= 1 and np.allclose(ref.sum(-1), 1.0, atol=1e-3):
        return ref
    shifted = np.exp(ref - ref.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def top1_decisive(got: np.ndarray, ref: np.ndarray) -> float:
    """Top-1 agreement on the rows the reference decides: its top class ahead of the runner-up by at least
    DECISIVE_MARGIN in probability (1 when no row is decisive). A row whose two best classes are near-equal
    flips under any rounding; a decisive row that flips is the precision's fault."""
    if not ref.size:
        return 1.0
    top = np.sort(distribution(ref), axis=-1)
    decisive = (top[..., -1] - top[..., -2]) >= DECISIVE_MARGIN
    agree = got.argmax(-1) == ref.argmax(-1)
    return float(np.mean(agree[decisive])) if decisive.any() else 1.0


def _decoded(best: np.ndarray) -> tuple:
    """A CTC greedy decoding of one run's best class per step: repeats merged, blanks (CTC_BLANK) dropped."""
    kept = np.ones(len(best), bool)
    kept[1:] = best[1:] != best[:-1]
    return tuple(best[kept & (best != CTC_BLANK)].tolist())


def _best_per_step(got: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample run (the leading axis), the best class of each step."""
    classes = ref.shape[-1]
    return got.reshape(len(ref), -1, classes).argmax(-1), ref.reshape(len(ref), -1, classes).argmax(-1)


def strings_equal(got: np.ndarray, ref: np.ndarray) -> float:
    """The share of sample runs whose decoded sequence (CTC greedy) equals the reference's."""
    if not ref.size:
        return 1.0
    got_best, ref_best = _best_per_step(got, ref)
    return float(np.mean([_decoded(g) == _decoded(r) for g, r in zip(got_best, ref_best)]))


def strings_decisive(got: np.ndarray, ref: np.ndarray) -> float:
    """The share of sample runs whose decoded sequence equals the reference's read with its undecided steps
    (top class ahead by less than DECISIVE_MARGIN) taken as `got` reads them: a near-tie reads either way
    under any rounding (PP-OCR's recogniser on rendered lines: 6 of 8 runs hold a step whose two best
    classes are within 0.03), a decisive step read otherwise is the precision's fault."""
    if not ref.size:
        return 1.0
    got_best, ref_best = _best_per_step(got, ref)
    top = np.sort(distribution(ref.reshape(len(ref), -1, ref.shape[-1])), axis=-1)
    decided = np.where((top[..., -1] - top[..., -2]) >= DECISIVE_MARGIN, ref_best, got_best)
    return float(np.mean([_decoded(g) == _decoded(r) for g, r in zip(got_best, decided)]))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))  # clipped as MediaPipe's decoder clips


def score_err(got: np.ndarray, ref: np.ndarray) -> float:
    """The largest error of the scores a decoder reads from per-anchor logits: their sigmoids."""
    return max_abs_err(_sigmoid(got), _sigmoid(ref))


def anchors_iou(got: np.ndarray, ref: np.ndarray) -> float:
    """Per sample run, the intersection over union of the anchors scored above 0.5, among the anchors the
    reference decides (its score at least DECISIVE_MARGIN / 2 from 0.5: a two-class row's lead of
    DECISIVE_MARGIN); the lowest over runs (1 where neither has any). Positives are rare, so agreement
    over all anchors would pass a detector whose scores collapsed; their IoU does not."""
    if not ref.size:
        return 1.0
    ref_score, got_score = _sigmoid(ref.reshape(len(ref), -1)), _sigmoid(got.reshape(len(ref), -1))
    decided = np.abs(ref_score - 0.5) >= DECISIVE_MARGIN / 2
    ref_set, got_set = (ref_score > 0.5) & decided, (got_score > 0.5) & decided
    union = np.sum(ref_set | got_set, axis=1)
    return float(np.min(np.where(union == 0, 1.0, np.sum(ref_set & got_set, axis=1) / np.maximum(union, 1))))


def top5_agreement(got: np.ndarray, ref: np.ndarray) -> float:
    """The share of rows whose reference top-1 class is among the five largest entries of `got`."""
    if not ref.size:
        return 1.0
    k = min(5, ref.shape[-1])
    best = np.argpartition(-got, k - 1, axis=-1)[..., :k]
    return float(np.mean((best == ref.argmax(-1)[..., None]).any(-1)))


def cosine(got: np.ndarray, ref: np.ndarray) -> float:
    """The lowest cosine similarity between one sample run's output and its reference (1 for two zeros)."""
    if not ref.size:
        return 1.0
    got, ref = got.reshape(len(ref), -1), ref.reshape(len(ref), -1)
    dot = np.sum(got * ref, axis=1)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
    both_zero = (norms == 0) & (dot == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.min(np.where(both_zero, 1.0, dot / norms)))


def mask_iou(got: np.ndarray, ref: np.ndarray) -> float:
    """The lowest intersection over union, per sample run, of the pixels above MASK_THRESHOLD
    (1 where neither has any)."""
    if not ref.size:
        return 1.0
    got, ref = got.reshape(len(ref), -1) > MASK_THRESHOLD, ref.reshape(len(ref), -1) > MASK_THRESHOLD
    union = np.sum(got | ref, axis=1)
    return float(np.min(np.where(union == 0, 1.0, np.sum(got & ref, axis=1) / np.maximum(union, 1))))


def box_err(got: np.ndarray, ref: np.ndarray) -> float:
    """The largest coordinate error in box units: a pixel, or 1 % of the coordinate range where larger."""
    return max_abs_err(got, ref) / max(1.0, BOX_UNIT_SHARE * _span(ref))


MEASURES: Dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "max_abs_err": max_abs_err, "rel_err": rel_err, "top1_agreement": top1_agreement,
    "top1_decisive": top1_decisive, "top5_agreement": top5_agreement, "cosine": cosine, "mask_iou": mask_iou, "box_err": box_err,
    "strings_equal": strings_equal, "strings_decisive": strings_decisive, "score_err": score_err,
    "anchors_iou": anchors_iou}
# Higher is better: these must be at least their limit.
AGREEMENTS = frozenset({"top1_agreement", "top1_decisive", "top5_agreement", "cosine", "mask_iou", "strings_equal",
                        "strings_decisive", "anchors_iou"})
ALWAYS = ("max_abs_err", "rel_err")  # taken for every output, whatever its policy judges
WORDS = {"max_abs_err": "max abs err {:.3g}", "rel_err": "{:.3g} of range", "top1_agreement": "top-1 agreement {:.0%}",
         "top1_decisive": "top-1 agreement on decisive rows {:.0%}",
         "top5_agreement": "top-5 agreement {:.0%}", "cosine": "cosine {:.5f}", "mask_iou": "mask IoU {:.4f}",
         "box_err": "box error {:.3g} px", "strings_equal": "decoded strings equal {:.0%}",
         "strings_decisive": "decoded strings equal but for undecided steps {:.0%}",
         "score_err": "sigmoid score max abs err {:.3g}", "anchors_iou": "IoU of decided anchors above 0.5 {:.4f}"}


def applies(measure: str, ref: np.ndarray) -> bool:
    """Whether a measure means something for this output (top-k needs a class axis)."""
    if measure.startswith("strings"):
        return ref.ndim >= 3 and ref.shape[-1] > 1
    return not measure.startswith("top") or (ref.ndim >= 2 and ref.shape[-1] > 1)


def meets(criterion: Criterion, value: float) -> bool:
    return value >= criterion.limit if criterion.measure in AGREEMENTS else value <= criterion.limit


def check_output(got: np.ndarray, ref: np.ndarray, policy: OutputPolicy) -> OutputCheck:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return OutputCheck(False, {}, f"shape {list(got.shape)}, expected {list(ref.shape)}")
    names = list(ALWAYS) + [c.measure for c in policy.criteria] + list(policy.report)
    measures = {name: MEASURES[name](got, ref) for name in dict.fromkeys(names) if applies(name, ref)}
    failed = [c for c in policy.criteria if c.measure in measures and not meets(c, measures[c.measure])]
    detail = "; ".join(f"{c.measure} {measures[c.measure]:.4g} (limit {c.limit:g})" for c in failed)
    if failed and policy.kind in ("probabilities", "logits") and ref.ndim >= 2 and ref.shape[-1] > 1:
        detail += "; " + _worst_row(got, ref)
    return OutputCheck(not failed, measures, detail)


def _worst_row(got: np.ndarray, ref: np.ndarray) -> str:
    """Where class scores differ most, and how far the reference's top class leads there: a failure on
    one input that fp32 itself barely decides reads differently from one spread over decided inputs."""
    rows, classes = len(ref), ref.shape[-1]
    errors = np.abs(got - ref).reshape(rows, -1, classes).max(-1)  # [runs, rows per run]
    run, row = np.unravel_index(int(np.nanargmax(errors)), errors.shape)
    top = np.sort(distribution(ref.reshape(rows, -1, classes)[run, row]))
    return f"worst at run {run + 1} of {rows}, where the reference's top class leads by {top[-1] - top[-2]:.3g}"


def compare(outputs: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
            policy: ComparisonPolicy) -> Dict[str, OutputCheck]:
    """One check per reference output (an output the artifact did not produce fails)."""
    return {name: check_output(outputs[name], ref, policy.policy(name)) if name in outputs
            else OutputCheck(False, {}, "not produced")
            for name, ref in reference.items()}


def describe(check: OutputCheck, policy: OutputPolicy) -> str:
    """What the output is and the measures taken, judged ones with their limits:
    `logits: top-1 agreement 88% (limit 0.95), top-5 agreement 100%, 0.04 of range`."""
    if not check.measures:
        return check.detail
    limits = {c.measure: c.limit for c in policy.criteria}
    judged = [m for m in check.measures if m in limits]
    words = [WORDS[name].format(check.measures[name]) + (f" (limit {limits[name]:g})" if name in limits else "")
             for name in judged + [m for m in check.measures if m not in limits]]
    return f"{policy.kind}: " + ", ".join(words)
