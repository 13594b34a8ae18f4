"""The ONNX node suite on every target: no wrong result and no crash on a test of a claimed operator.

The suite (tests/node_suite/suite.txt) is the single-node tests of 96 edge operators that plain
onnxruntime passes, regenerated from the installed onnx package's generators and cached under
.cache/node_suite/. Each test is built in fp32 as shipped and with its parameter inputs as
constants, each build in a forked child; make test runs a sample on tvm-x86 and openvino-cpu. A clean one-line refusal is allowed (it counts as not
claimed); a wrong output or a crash fails. Every run records its counts in
benchmarks/results/node_suite.md, which the README cites.
"""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from conftest import FULL
from node_suite import cases, results, runner, suite


@pytest.mark.slow
@pytest.mark.parametrize("target", [t for t in suite.TARGETS if t != "tflite-arm"])  # tflite-arm: its own file
def test_node_suite(target):
    check_target(target)


def check_target(target: str) -> None:
    """Run the suite on `target` (whole, or its sample), record the counts, and fail on any wrong result,
    crash, or pass of an operator the target does not claim."""
    report = suite.run_target(target, whole=FULL)
    results.record(report)
    assert report.by_test(), "no node test ran"
    if report.failures():
        pytest.fail(report.describe_failures(), pytrace=False)
    unclaimed = {o.op_type for o in report.outcomes if o.status == runner.PASSED} - report.claimed
    assert not unclaimed, f"{target} passes node tests of operators it does not claim: {sorted(unclaimed)}"


def test_suite_is_regenerated_from_onnx():
    """The committed list names only cached cases of the committed operators, in both forms where they differ."""
    names = suite.suite_names()
    loaded = cases.load_cases(names)
    operators = set(cases.read_list(cases.OPERATORS_FILE))
    assert len(operators) == 96
    assert {c.op_type for c in loaded} <= operators
    assert all(not n.endswith("_expanded") for n in names)
    two_forms = [c for c in loaded if c.forms == (cases.SHIPPED, cases.CONST)]
    assert two_forms and all(set(c.feeds(cases.CONST)) == {c.inputs[0]} for c in two_forms)


def test_a_build_that_kills_its_process_is_one_crash(monkeypatch):
    """Each build runs in a forked child: a segfault is one test's crash, not the suite's end."""
    case = cases.load_cases(["test_relu"])[0]
    monkeypatch.setattr(runner, "run_one", lambda *args: os.kill(os.getpid(), signal.SIGSEGV))
    (outcome,) = runner.run("onnxruntime", [case], workers=1)
    assert (outcome.status, outcome.reason) == (runner.CRASH, "killed by SIGSEGV")


def test_outputs_are_judged_as_onnx_judges_them():
    expected = {"y": np.array([1.0, np.nan, -np.inf, 1000.0], np.float32)}
    close = {"y": np.array([1.0005, np.nan, -np.inf, 1000.9], np.float32)}  # rtol 1e-3
    assert runner.compare(close, expected, 1e-3, 1e-7) == ""
    assert "1 of 4 values differ" in runner.compare({"y": close["y"] * [1, 1, 1, 1.01]}, expected, 1e-3, 1e-7)
    assert "shape" in runner.compare({"y": close["y"][:3]}, expected, 1e-3, 1e-7)
    assert "is int32" in runner.compare({"y": np.zeros(4, np.int32)}, expected, 1e-3, 1e-7)
    assert runner.compare({"y": np.arange(3, dtype=np.int32)}, {"y": np.arange(3)}, 1e-3, 1e-7) == ""
