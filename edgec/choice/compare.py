"""`edgec compare`: build every target x precision that applies, measure each on the device through
its own harness, mark the Pareto-optimal rows (latency, size, accuracy) and pick one."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgec.choice.measure import Evaluation, Figures, measure
from edgec.choice.pareto import Objective, front
from edgec.errors import EdgecError, InputError
from edgec.package.harness.errors import ExitCode
from edgec.package.harness.manifest import LayerError, from_json
from edgec.package.harness.session import LayerTime

logger = logging.getLogger(__name__)

DEFAULT_ACCURACY_DROP = 1.0  # points below the source model that a pick may lose when no budget is given
OBJECTIVES = (
    Objective("p50_ms", lambda c: c.figures.p50_ms if c.figures else None),
    Objective("size_bytes", lambda c: c.figures.size_bytes if c.figures else None),
    Objective("accuracy", lambda c: c.figures.accuracy if c.figures else None, maximize=True),
)
# Under emulation timings mean nothing: the rule is the smallest artifact that holds the budget
# (int8 before fp16 before fp32 when sizes tie), never the emulated latency.
SHARED_FLAGS = ("eval_data", "max_accuracy_drop")
EMULATED_RULE = "emulated device: timings mean nothing, so the smallest artifact that holds the accuracy budget wins"


@dataclass
class Candidate:
    """One configuration: what was built, whether it was, and what it measured."""

    target: str
    precision: str
    flags: dict[str, Any] = field(default_factory=dict)  # the other build options, by option name
    status: str = "measured"  # measured | refused | not faithful
    reason: str = ""
    artifact: Optional[str] = None
    figures: Optional[Figures] = None
    pareto: bool = False

    @property
    def label(self) -> str:
        """Target, precision and the flags that tell rows apart (not the accuracy budget they all share)."""
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.flags.items()) if k not in SHARED_FLAGS)
        return f"{self.target} {self.precision}" + (f" {extra}" if extra else "")


@dataclass
class Choice:
    """Which candidate won and why."""

    index: Optional[int]
    why: str


@dataclass
class Comparison:
    """compare's result: the results JSON that `edgec report` reads."""

    source: str
    device: str
    emulated: bool
    eval_data: Optional[str]
    measure: Optional[str]
    baseline_accuracy: Optional[float]  # the source model's own figure on the evaluation data
    max_accuracy_drop: float
    candidates: list[Candidate]
    choice: Choice
    layers: list[LayerError] = field(default_factory=list)  # per-layer int8 error of `layers_of`
    layers_of: Optional[str] = None
    profile: list[LayerTime] = field(default_factory=list)  # per-layer times of the chosen artifact
    profile_of: Optional[str] = None


def build_candidate(source: str, candidate: Candidate, folder: Path, calibration: str | None, **build_args):
    """Build one candidate into `folder` (`build_args`: api.build's input_shapes, weights, ...); a refusal
    becomes the row's reason. Returns the artifact, or None when it was refused or is not faithful."""
    from edgec import api

    try:
        artifact = api.build(source, candidate.target, folder, precision=candidate.precision, force=True,
                             options=dict(candidate.flags), **build_args,
                             calibration=calibration if candidate.precision == "int8" else None)
    except EdgecError as exc:
        if exc.exit_code != ExitCode.REFUSED:
            raise
        candidate.status, candidate.reason = "refused", str(exc)
        logger.info(f"{candidate.label}: refused: {exc}")
        return None
    candidate.artifact = str(artifact.path)
    if not artifact.verified:
        candidate.status, candidate.reason = "not faithful", "its outputs disagree with the source model's"
        return None
    return artifact


def choose(candidates: list[Candidate], baseline: float | None, budget: float) -> Choice:
    """The fastest measured candidate within `budget` points of `baseline` (under emulation: the smallest)."""
    measured = [(i, c) for i, c in enumerate(candidates) if c.figures is not None]
    if not measured:
        return Choice(None, "no candidate was built and measured")
    within = [(i, c) for i, c in measured
              if baseline is None or c.figures.accuracy is None or baseline - c.figures.accuracy <= budget]
    if not within:
        return Choice(None, f"no candidate holds the accuracy budget of {budget} points")
    emulated = any(c.figures.emulated for _, c in measured)
    rank = ("fp32", "fp16", "int8")
    if emulated:
        index, best = min(within, key=lambda ic: (ic[1].figures.size_bytes, -rank.index(ic[1].precision)))
        return Choice(index, f"{EMULATED_RULE}: {best.label} ({best.figures.size_bytes} bytes)")
    index, best = min(within, key=lambda ic: ic[1].figures.p50_ms)
    others = ", ".join(f"{c.label} {c.figures.p50_ms:.3f} ms" for i, c in measured if i != index)
    budget_note = f" within {budget} points of the source model's accuracy" if baseline is not None else ""
    return Choice(index, f"fastest measured{budget_note}: {best.label} p50 {best.figures.p50_ms:.3f} ms"
                  + (f" (others: {others})" if others else ""))


def measure_candidates(candidates: list[Candidate], built: dict, device: str | None, evaluation, iters: int) -> None:
    """Set the figures of every candidate that was built (`built`: label -> artifact)."""
    measured = [c for c in candidates if c.label in built]
    where = device or "each target's device"
    logger.info(f"measuring {len(measured)} artifact(s) on {where} in interleaved rounds")
    for candidate, figures in zip(measured, measure([built[c.label] for c in measured], device, evaluation, iters)):
        candidate.figures = figures
        logger.info(f"{candidate.label}: p50 {figures.p50_ms:.3f} ms, {figures.size_bytes} B"
                    + (f", {figures.accuracy:.2f} %" if figures.accuracy is not None else ""))


def mark_pareto(candidates: list[Candidate]) -> None:
    objectives = [o for o in OBJECTIVES if o.name != "accuracy" or any(
        c.figures and c.figures.accuracy is not None for c in candidates)]
    for candidate, optimal in zip(candidates, front(candidates, objectives)):
        candidate.pareto = optimal


def compare(source: str, targets: list[str], precisions: list[str], output: str | Path, *,
            device: str | None = None, eval_data: str | None = None, calibration: str | None = None,
            max_accuracy_drop: float | None = None, input_shapes: tuple[str, ...] = (),
            weights: str | None = None, iters: int = 100, force: bool = False, trust_code: bool = False) -> Comparison:
    """Build, verify, bench and evaluate every target x precision; artifacts stay in `output`/TARGET-PRECISION."""
    from edgec.frontends import require_trust
    from edgec.targets import PRECISIONS, load_target

    require_trust(source, trust_code)

    for target in targets:
        load_target(target)  # an unknown target is refused before any work
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise InputError(f"unknown precision '{unknown[0]}' in --precisions: choose among {', '.join(PRECISIONS)}")
    output = Path(output)
    if output.exists() and not force:
        raise InputError(f"output folder {output} already exists: choose another -o or pass --force")
    evaluation = Evaluation.load(eval_data, source, input_shapes, weights, trust_code) if eval_data else None
    budget = DEFAULT_ACCURACY_DROP if max_accuracy_drop is None else max_accuracy_drop
    candidates = [Candidate(t, p) for t in targets for p in precisions]
    built = {}
    for candidate in candidates:
        logger.info(f"building {candidate.label}")
        folder = output / f"{Path(candidate.target).stem}-{candidate.precision}"
        artifact = build_candidate(source, candidate, folder, calibration, input_shapes=input_shapes, weights=weights,
                                   trust_code=trust_code)
        if artifact is not None:
            built[candidate.label] = artifact
    measure_candidates(candidates, built, device, evaluation, iters)
    mark_pareto(candidates)
    baseline = evaluation.baseline if evaluation else None
    choice = choose(candidates, baseline, budget)
    emulated = any(c.figures and c.figures.emulated for c in candidates)
    comparison = Comparison(source, device or "each target's device", emulated, eval_data,
                            evaluation.measure if evaluation else None, baseline, budget, candidates, choice)
    if choice.index is not None:
        attach_details(comparison, candidates[choice.index], device)
    return comparison


def attach_details(result, chosen: Candidate, device: str | None) -> None:
    """The chosen artifact's per-layer profile, and the per-layer int8 error of it (or of the int8 row
    of its target when it is not int8), for the report."""
    from edgec import api
    from edgec.package import artifact as files

    layers = api.profile(chosen.artifact, device)["layers"]
    result.profile = [from_json(LayerTime, layer, "profile") for layer in layers]
    result.profile_of = chosen.label
    int8 = next((c for c in [chosen] + result.candidates
                 if c.precision == "int8" and c.artifact and c.target == chosen.target), None)
    if int8 is not None:
        quantization = files.read_manifest(Path(int8.artifact)).quantization
        result.layers, result.layers_of = list(quantization.layers if quantization else []), int8.label
