"""The corpus task measures at a reduced precision: a class fp32 rates within twice the precision's own
probability error of its best ties with it; landmarks are held to the precision's pixel error."""
from __future__ import annotations

import numpy as np
import pytest

from models.corpus import fidelity


def test_the_tie_margin_is_twice_the_precisions_probability_error():
    assert fidelity.tie_margin("int8") == pytest.approx(0.1)  # 2 x the policy's 0.05
    assert fidelity.tie_margin("fp16") == pytest.approx(0.02)
    assert fidelity.tie_margin("fp32") == 0.0


def test_a_flip_between_tied_classes_agrees_and_a_decided_one_does_not():
    ref = np.array([[0.46, 0.40, 0.14],  # lead 0.06: a tie in int8, not in fp16
                    [0.70, 0.20, 0.10],  # lead 0.5: decided
                    [0.30, 0.29, 0.41]])  # the best and third within 0.11: decided in int8 too
    got = ref[:, [1, 0, 2]]  # rows 0 and 1 read their runner-up first, row 2 unchanged
    top1 = fidelity.top1("p")
    assert top1.score({"p": ref}, {"p": got}, "fp32") == pytest.approx(1 / 3)
    assert top1.score({"p": ref}, {"p": got}, "fp16") == pytest.approx(1 / 3)
    assert top1.score({"p": ref}, {"p": got}, "int8") == pytest.approx(2 / 3)
    # logits are read as their softmax: the same rows as logits give the same scores
    assert top1.score({"p": np.log(ref)}, {"p": np.log(got)}, "int8") == pytest.approx(2 / 3)
    # a candidate choosing a class 0.11 below fp32's best is wrong even though some other class ties
    third = ref.copy()
    third[2] = [0.30, 0.29, 0.0]
    assert top1.score({"p": ref}, {"p": third}, "int8") == pytest.approx(2 / 3)


def test_a_sequence_reads_its_tied_steps_as_the_candidate_does():
    def steps(*rows):  # one run's steps over 4 classes (0 the blank), [steps, classes]
        return np.array([np.eye(4)[c] * 0.9 + 0.025 if isinstance(c, int) else c for c in rows])

    tie = np.array([0.05, 0.47, 0.43, 0.05])
    ref = steps(1, tie, 0, 3)[:, None]  # [steps, batch, classes]: the batch on axis 1, as captcha_crnn's
    got = steps(1, tie[[0, 2, 1, 3]], 0, 3)[:, None]
    strings = fidelity.ctc_strings("s", 1, blank=0)
    assert strings.score({"s": ref}, {"s": got}, "fp32") == 0.0  # (1, 3) against (1, 2, 3)
    assert strings.score({"s": ref}, {"s": got}, "int8") == 1.0  # the 0.04 lead is a tie at 0.1
    assert strings.score({"s": ref}, {"s": got}, "fp16") == 0.0  # but not at fp16's 0.02


def test_landmarks_are_held_to_the_precisions_pixel_error():
    ref = np.zeros((2, 1, 1, 6 * 3))  # two faces of 6 landmarks (x, y, z)
    got = ref.copy()
    got[1, ..., 0::3] = 1.5  # face 1 off by 1.5 px in x, and by 9 in depth, which is not a pixel position
    got[1, ..., 2::3] = 9.0
    landmarks = fidelity.landmarks("l")
    assert landmarks.score({"l": ref}, {"l": got}, "fp16") == 0.5
    assert landmarks.score({"l": ref}, {"l": got}, "fp32") == 0.5
    assert landmarks.score({"l": ref}, {"l": got}, "int8") == 1.0
