"""The node suite on one target: which tests run, what the target claims, and what happened."""
from __future__ import annotations

import collections
import resource
import time
from dataclasses import dataclass

from .cases import SUITE_FILE, NodeCase, load_cases, read_list
from .runner import CRASH, PASSED, REFUSED, WRONG, Outcome, run_isolated, status_of

TARGETS = ("onnxruntime", "openvino-cpu", "tflite-arm", "tvm-x86")
# TVM links every model with LLVM, and openvino-cpu compiles each (0.56 and 0.42 CPU-seconds a form,
# against 0.24 and 0.27 for onnxruntime and tflite-arm): they run a fixed sample, the first test of each operator,
# to keep the suite inside its 8 minutes of make test. `--whole` and make test-full run them whole.
SAMPLED = frozenset({"tvm-x86", "openvino-cpu"})
STATUSES = (PASSED, REFUSED, WRONG, CRASH)


def suite_names() -> list[str]:
    """The committed suite: the node tests plain onnxruntime passes in both forms."""
    return read_list(SUITE_FILE)


def sample(cases: list[NodeCase]) -> list[NodeCase]:
    """The first test (by name) of each operator."""
    first = {}
    for case in sorted(cases, key=lambda c: c.name):
        first.setdefault(case.op_type, case)
    return sorted(first.values(), key=lambda c: c.name)


def claimed_operators(target: str) -> frozenset[str]:
    """The operators the target claims, as `edgec targets --json` shows them."""
    from edgec import api

    return frozenset(next(t["operators"] for t in api.targets() if t["name"] == target))


@dataclass
class TargetReport:
    """Every outcome of one target's run, with what it claims and what the run cost."""

    target: str
    outcomes: list[Outcome]
    claimed: frozenset[str]
    sampled: bool
    seconds: float
    cpu_seconds: float

    def by_test(self) -> dict[str, list[Outcome]]:
        tests = collections.defaultdict(list)
        for outcome in self.outcomes:
            tests[outcome.test].append(outcome)
        return dict(tests)

    def counts(self, claimed_only: bool = False) -> dict[str, int]:
        """Tests per status (a test passes when a form passes and no form is wrong or crashes)."""
        counts = dict.fromkeys(STATUSES, 0)
        for forms in self.by_test().values():
            if not claimed_only or forms[0].op_type in self.claimed:
                counts[status_of(forms)] += 1
        return counts

    def failures(self) -> list[Outcome]:
        """Wrong results and crashes of tests whose operator the target claims: what must not happen."""
        return [o for o in self.outcomes if o.status in (WRONG, CRASH) and o.op_type in self.claimed]

    def describe_failures(self, limit: int = 60) -> str:
        failures = self.failures()
        lines = [f"{o.status:<5} {o.test} [{o.form}]: {o.reason}" for o in failures[:limit]]
        more = [f"... and {len(failures) - limit} more"] if len(failures) > limit else []
        return "\n".join([f"{self.target}: {len(failures)} wrong or crashed forms of claimed tests", *lines, *more])


def run_target(target: str, names: list[str] | None = None, workers: int = 2, whole: bool = False) -> TargetReport:
    """Run the suite (or `names`) on `target`; sampled targets run the sample unless `whole`."""
    cases = load_cases(names if names is not None else suite_names())
    sampled = target in SAMPLED and names is None and not whole
    if sampled:
        cases = sample(cases)
    started, cpu = time.perf_counter(), _cpu_seconds()
    outcomes = run_isolated(target, cases, workers)
    return TargetReport(target, outcomes, claimed_operators(target), sampled,
                        round(time.perf_counter() - started, 1), round(_cpu_seconds() - cpu, 1))


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: the suite's cost on a busy machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
