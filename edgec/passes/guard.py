"""Run the pass pipeline so that no pass can kill a build or silently change its numbers.

The steps run in place on one copy of the model, or on the model itself when the caller gives it
up with a snapshot of it (see Original). A step that raises is skipped with a one-line warning
naming the step and the node its traceback was working on, and the pipeline runs again from a
fresh copy without it: a failed pass never leaves a half-edited graph behind.

After the pipeline the result is run against the original model's outputs. If they differ by
more than `TOLERANCE` of each output's range, prefixes of the pipeline are bisected to the
first step that changed the numbers; that step is dropped with a warning and the rest runs
again. Failures cost reruns; a healthy pipeline costs one copy (or a snapshot), and no check at
all when it changed nothing but annotations (shapes, backend marks).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx_ir as ir

from edgec import ir as eir

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4  # of each output's range, as the fp32 bar


@dataclass(frozen=True)
class Step:
    """One named pass of the pipeline; `make` builds a fresh pass object for each run.

    A step with `after` runs only if one of the steps named there changed the model (a second
    round of folding and rewriting has work only when the first round did something). A step that
    `annotates` only adds what is known about the graph (shapes, marks for backends) and cannot
    change what it computes.
    """

    name: str
    make: Callable[[], ir.passes.PassBase]
    after: tuple[str, ...] = ()
    annotates: bool = False


@dataclass
class StepRecord:
    name: str
    modified: bool
    seconds: float  # what the step cost: the scaling benchmark reads it


@dataclass
class GuardReport:
    steps: list[StepRecord] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one line per step that raised
    skipped: list[str] = field(default_factory=list)  # steps skipped because they raised
    dropped: list[str] = field(default_factory=list)  # steps dropped because they changed the numbers
    unchecked: bool = False  # onnxruntime could not judge the model
    max_error: float | None = None  # of the output range, after the pipeline

    @property
    def warnings(self) -> list[str]:
        dropped = [f"warning: pass {name} changed the model's outputs and was dropped" for name in self.dropped]
        unchecked = ["warning: the optimized graph could not be checked against the original"] if self.unchecked else []
        return self.failures + dropped + unchecked


def node_in_traceback(exc: BaseException) -> ir.Node | None:
    """The innermost `ir.Node` a failing pass had in hand, read from its traceback's frames."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, ir.Node):
                found = value
                break
        tb = tb.tb_next
    return found


def _describe(node: ir.Node | None) -> str:
    return f" at {node.op_type} node '{node.name}'" if node is not None else ""


class Checker:
    """Compares a model's outputs with the original's on the build's samples (onnxruntime, unoptimized).

    `runs` are the feeds (package.harness.interface.Runs) and `expected` the original's outputs for
    them, put together as the runs were split; `outputs` are the model's output specs.
    """

    def __init__(self, runs, expected: dict[str, np.ndarray], outputs: list):
        self.runs, self.expected, self.outputs = runs, expected, outputs

    @classmethod
    def of(cls, model: ir.Model, inputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> "Checker":
        """A checker for `model`'s arrays as the build's samples are keyed: by input and output name."""
        from edgec.package import samples
        from edgec.package.harness import interface

        specs_in, specs_out = samples.model_interface(model)
        return cls(interface.split(specs_in, inputs), expected, specs_out)

    def error(self, model: ir.Model) -> float:
        """The worst output's max abs error relative to its range (inf if the model does not run)."""
        from edgec.ir import runtime

        try:
            outputs = runtime.run_all(runtime.session(model), self.runs, self.outputs)
        except Exception as exc:
            logger.info("the optimized model does not run in onnxruntime: %s", exc)
            return float("inf")
        return max((relative_error(outputs.get(name), value) for name, value in self.expected.items()), default=0.0)


def relative_error(got: np.ndarray | None, expected: np.ndarray) -> float:
    if got is None or got.shape != expected.shape:
        return float("inf")
    if expected.size == 0:
        return 0.0
    a, b = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    finite = np.isfinite(b)
    if not np.array_equal(np.isfinite(a), finite):
        return float("inf")
    if not finite.any():
        return 0.0
    span = float(np.ptp(b[finite])) or float(np.max(np.abs(b[finite]))) or 1.0
    return float(np.max(np.abs(a[finite] - b[finite]))) / span


class Original:
    """The model the pipeline started from, as a fresh copy for each run.

    A caller that keeps its model gets runs on clones (`Model.clone` shares the weights: a copy costs
    nodes, 1.7 s at 16,000). A caller that gives its model up hands over a `snapshot` of it
    (eir.Snapshot): the first run edits the model in place, and only the reruns that a failure needs
    rebuild it from the snapshot.
    """

    def __init__(self, model: ir.Model, snapshot: eir.Snapshot | None = None):
        self.model, self.snapshot, self.given = model, snapshot, snapshot is not None

    def copy(self) -> ir.Model:
        if self.given:  # the first run takes the model itself
            self.given = False
            return self.model
        return self.snapshot.restore() if self.snapshot is not None else self.model.clone()

    def unchanged(self) -> ir.Model:
        """The original itself where it is kept, a copy where the first run took it."""
        return self.snapshot.restore() if self.snapshot is not None else self.model


def _run(steps: list[Step], work: ir.Model, report: GuardReport | None = None) -> ir.Model | int:
    """The steps applied in place to `work` (a copy), or the index of the step that raised."""
    changed: set[str] = set()
    for index, step in enumerate(steps):
        if step.after and not changed.intersection(step.after):
            continue
        started = time.perf_counter()
        try:
            result = step.make()(work)
        except Exception as exc:  # a pass is library code we do not control: it must not end the build
            node = node_in_traceback(exc)
            logger.info("pass %s failed", step.name, exc_info=exc)
            if report is not None:
                report.failures.append(f"warning: pass {step.name} failed{_describe(node)} and was skipped "
                                       f"({type(exc).__name__}; --verbose shows why)")
            return index
        work = result.model
        if result.modified:
            changed.add(step.name)
        if report is not None:
            report.steps.append(StepRecord(step.name, result.modified, time.perf_counter() - started))
    return work


def run_guarded(steps: list[Step], model: ir.Model, checker: Checker | None,
                snapshot: eir.Snapshot | None = None) -> tuple[ir.Model, GuardReport]:
    """Run the steps on a copy of `model` (on `model` itself where the caller gives it up, keeping a
    `snapshot`); return the optimized model and what happened."""
    report = GuardReport()
    original = Original(model, snapshot)
    active = list(steps)
    while True:
        report.steps.clear()
        result = _run(active, original.copy(), report)
        if isinstance(result, int):
            report.skipped.append(active.pop(result).name)
            continue
        if checker is None:
            return result, report
        if not _computes_differently(active, report):  # the same computation: no run can tell them apart
            report.max_error = 0.0
            return result, report
        report.max_error = checker.error(result)
        if report.max_error <= TOLERANCE:
            return result, report
        if checker.error(original.unchanged()) > TOLERANCE:  # onnxruntime cannot judge this model: keep the result
            report.unchecked = True
            return result, report
        culprit = _first_bad(active, original, checker)
        logger.info("pass %s changed the outputs by %.3g of their range", active[culprit].name, report.max_error)
        report.dropped.append(active.pop(culprit).name)


def _computes_differently(steps: list[Step], report: GuardReport) -> bool:
    """Some step that can change what the model computes did change it (a check costs a session: seconds on
    a large graph, spent in vain on a model the pipeline only annotated)."""
    annotating = {step.name for step in steps if step.annotates}
    return any(record.modified and record.name not in annotating for record in report.steps)


def _first_bad(steps: list[Step], original: Original, checker: Checker) -> int:
    """Index of the step after which the pipeline first fails the check (binary search over prefixes)."""
    low, high = 0, len(steps)  # the first `low` steps pass, the first `high` fail
    while high - low > 1:
        middle = (low + high) // 2
        if checker.error(_run(steps[:middle], original.copy())) <= TOLERANCE:
            low = middle
        else:
            high = middle
    return high - 1
