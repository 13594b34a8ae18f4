"""Judging outputs against a reference: every measure is taken, the policy says which must hold."""
from typing import Callable, Dict

import numpy as np

from .manifest import ComparisonPolicy, Criterion, OutputCheck, OutputPolicy

# Errors below this count as exact: float noise across kernels, not disagreement.
EXACT = 1e-6


def max_abs_err(got: np.ndarray, ref: np.ndarray) -> float:
    """The largest |got - ref|. Where the reference is NaN or infinite, the same value there is agreement;
    any other NaN makes the error NaN, which fails every limit."""
    if not ref.size:
        return 0.0
    with np.errstate(invalid="ignore"):
        agree = (got == ref) | (np.isnan(got) & np.isnan(ref))
        return float(np.max(np.where(agree, 0.0, np.abs(got - ref))))


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """The largest error as a share of the reference's range of finite values (0 when it is within EXACT)."""
    err = max_abs_err(got, ref)
    if err <= EXACT:  # False for NaN, which stays NaN
        return 0.0
    finite = ref[np.isfinite(ref)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    return err / max(span, 1e-12)


def top1_agreement(got: np.ndarray, ref: np.ndarray) -> float:
    """The share of rows (along the last axis) whose largest entry is the same."""
    return float(np.mean(got.argmax(-1) == ref.argmax(-1))) if ref.size else 1.0


MEASURES: Dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "max_abs_err": max_abs_err, "rel_err": rel_err, "top1_agreement": top1_agreement}
AGREEMENTS = frozenset({"top1_agreement"})  # higher is better: these must be at least their limit


def applies(measure: str, ref: np.ndarray) -> bool:
    """Whether a measure means something for this output (top-1 needs a class axis)."""
    return measure != "top1_agreement" or (ref.ndim >= 2 and ref.shape[-1] > 1)


def meets(criterion: Criterion, value: float) -> bool:
    return value >= criterion.limit if criterion.measure in AGREEMENTS else value <= criterion.limit


def check_output(got: np.ndarray, ref: np.ndarray, policy: OutputPolicy) -> OutputCheck:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return OutputCheck(False, {}, f"shape {list(got.shape)}, expected {list(ref.shape)}")
    measures = {name: fn(got, ref) for name, fn in MEASURES.items() if applies(name, ref)}
    failed = [c for c in policy.criteria if c.measure in measures and not meets(c, measures[c.measure])]
    detail = "; ".join(f"{c.measure} {measures[c.measure]:.3g} (limit {c.limit:g})" for c in failed)
    return OutputCheck(not failed, measures, detail)


def compare(outputs: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
            policy: ComparisonPolicy) -> Dict[str, OutputCheck]:
    """One check per reference output (an output the artifact did not produce fails)."""
    return {name: check_output(outputs[name], ref, policy.policy(name)) if name in outputs
            else OutputCheck(False, {}, "not produced")
            for name, ref in reference.items()}


def describe(check: OutputCheck, policy: OutputPolicy) -> str:
    """The measures a policy judges, in a few words: `max abs err 0.002, 0.0004 of range (limit 0.0001)`."""
    if not check.measures:
        return check.detail
    limits = {c.measure: c.limit for c in policy.criteria}
    words = []
    for name, template in (("max_abs_err", "max abs err {:.3g}"), ("rel_err", "{:.3g} of range"),
                           ("top1_agreement", "top-1 agreement {:.0%}")):
        if name in check.measures:
            words.append(template.format(check.measures[name]) + (f" (limit {limits[name]:g})" if name in limits else ""))
    return ", ".join(words)
