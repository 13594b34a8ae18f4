"""Judging outputs: every measure taken, the policy's criteria decide, per output."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.package.harness import compare
from edgec.package.harness.manifest import ComparisonPolicy, Criterion, OutputPolicy

RANGE = OutputPolicy("tensor", [Criterion("rel_err", 1e-3)])


def test_error_relative_to_the_reference_range():
    ref = np.array([[0.0, 10.0], [5.0, 2.0]])
    check = compare.check_output(ref + [[0.0, 0.005], [0.0, 0.0]], ref, RANGE)
    assert check.passed and check.measures["max_abs_err"] == pytest.approx(0.005)
    assert check.measures["rel_err"] == pytest.approx(0.0005)
    assert "top1_agreement" not in check.measures  # taken only where the policy names it
    failed = compare.check_output(ref + 0.5, ref, RANGE)
    assert not failed.passed and "rel_err 0.05 (limit 0.001)" in failed.detail


def test_float_noise_counts_as_exact_even_on_a_flat_output():
    ref = np.full((4,), 3.0)
    assert compare.check_output(ref + 1e-7, ref, RANGE).measures["rel_err"] == 0.0
    assert not compare.check_output(ref + 1e-3, ref, RANGE).passed


def test_agreements_must_reach_their_limit():
    ref = np.eye(4)
    policy = OutputPolicy("logits", [Criterion("top1_agreement", 0.75)])
    got = ref.copy()
    got[0] = [0, 1, 0, 0]
    assert compare.check_output(got, ref, policy).passed  # 3 of 4 rows agree
    got[1] = [1, 0, 0, 0]
    assert not compare.check_output(got, ref, policy).passed


def test_nan_outputs_fail_and_shapes_must_match():
    ref = np.ones(3)
    assert not compare.check_output(np.array([1.0, np.nan, 1.0]), ref, RANGE).passed
    assert not compare.check_output(np.array([1.0, np.inf, 1.0]), ref, RANGE).passed
    mismatch = compare.check_output(np.ones(4), ref, RANGE)
    assert not mismatch.passed and "shape [4], expected [3]" in mismatch.detail


def test_the_references_own_nan_and_infinities_are_agreement():
    ref = np.array([np.nan, np.inf, -np.inf, 0.0, 4.0])
    assert compare.check_output(ref.copy(), ref, RANGE).passed
    check = compare.check_output(np.array([np.nan, np.inf, -np.inf, 0.0, 4.2]), ref, RANGE)
    assert check.measures["rel_err"] == pytest.approx(0.05)  # of the finite range 0..4
    assert not compare.check_output(np.array([0.0, np.inf, -np.inf, 0.0, 4.0]), ref, RANGE).passed


def test_empty_and_integer_outputs():
    assert compare.check_output(np.zeros((0, 3)), np.zeros((0, 3)), RANGE).passed
    exact = OutputPolicy("integers", [Criterion("max_abs_err", 0)])
    assert compare.check_output(np.array([1, 2, 3]), np.array([1, 2, 3]), exact).passed
    assert not compare.check_output(np.array([1, 2, 4]), np.array([1, 2, 3]), exact).passed


def test_each_output_is_judged_by_its_own_policy_and_missing_ones_fail():
    policy = ComparisonPolicy(RANGE, {"loose": OutputPolicy("tensor", [Criterion("rel_err", 0.5)])})
    ref = {"strict": np.arange(4.0), "loose": np.arange(4.0), "gone": np.zeros(1)}
    got = {"strict": np.arange(4.0) + 0.3, "loose": np.arange(4.0) + 0.3}
    checks = compare.compare(got, ref, policy)
    assert not checks["strict"].passed and checks["loose"].passed
    assert not checks["gone"].passed and checks["gone"].detail == "not produced"
