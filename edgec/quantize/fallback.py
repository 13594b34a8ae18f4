"""Accuracy-driven fallback: keep the most harmful layers in float until the drop fits the budget.

Accuracy is top-1 against labels when the evaluation data has them, else top-1 agreement
with the float model. Both models run in onnxruntime with its real int8 kernels. The search
itself (`search`) knows nothing of models: it takes the function that quantizes with some
layers excluded and the function that judges the result.
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import onnx_ir as ir

from edgec.ir import runtime
from edgec.quantize.data import CalibrationData

logger = logging.getLogger(__name__)

GROUPS = 8  # the layers are released in about this many groups, most harmful first


def predictions(model: ir.Model, data: CalibrationData) -> np.ndarray:
    """Top-1 class of the first output for every evaluation sample, with onnxruntime's int8 kernels."""
    session = runtime.session(model, optimize=True)
    first = session.get_outputs()[0].name
    parts = []
    for feed in data.feeds():
        logits = session.run([first], feed)[0]
        parts.append(logits.reshape(-1, logits.shape[-1]).argmax(1))
    return np.concatenate(parts)


class AccuracyJudge:
    """Accuracy in percent of any model on the evaluation data."""

    def __init__(self, float_model: ir.Model, data: CalibrationData):
        self.data = data
        self.reference = data.labels if data.labels is not None else predictions(float_model, data)
        self.measure = "accuracy vs labels" if data.labels is not None else "top-1 agreement with fp32"
        self.float_accuracy = self(float_model)

    def __call__(self, model: ir.Model) -> float:
        predicted = predictions(model, self.data)
        return float(100.0 * np.mean(predicted == self.reference[: len(predicted)]))


def search(ranked: list[str], quantize: Callable, judge: Callable, reference: float, budget: float, first) -> tuple:
    """Exclude groups of the `ranked` layers (most harmful first) until `reference - judge(model)` is
    within `budget`; return (model, excluded layers, steps)."""
    accuracy = judge(first)
    steps = [{"float_layers": [], "accuracy": accuracy, "drop": reference - accuracy}]
    model, excluded = first, []
    size = max(1, math.ceil(len(ranked) / GROUPS))
    while reference - accuracy > budget and len(excluded) < len(ranked):
        group = ranked[len(excluded) : len(excluded) + size]
        excluded += group
        model = quantize(tuple(excluded))
        before, accuracy = accuracy, judge(model)
        steps.append({"float_layers": group, "accuracy": accuracy, "drop": reference - accuracy,
                      "recovered_points": accuracy - before})
        logger.info(f"kept {', '.join(group)} in float: {accuracy:.2f} %")
    return model, excluded, steps


def run(quantizer, layers: list, judge: AccuracyJudge, budget: float, first: ir.Model) -> tuple:
    """The fallback on real models: (model, the manifest's fallback record)."""
    logger.info(f"int8 {judge.measure}: budget {budget} points below fp32's {judge.float_accuracy:.2f} %")
    model, excluded, steps = search([layer.name for layer in layers], quantizer.run, judge, judge.float_accuracy,
                                    budget, first)
    accuracy = steps[-1]["accuracy"]
    drop = judge.float_accuracy - accuracy
    if drop > budget:
        logger.warning(f"the accuracy drop {drop:.2f} points still exceeds {budget} with every layer tried")
    return model, {
        "budget_points": budget,
        "measure": judge.measure,
        "eval": judge.data.source,
        "eval_samples": judge.data.count,
        "float_accuracy": judge.float_accuracy,
        "quantized_accuracy": accuracy,
        "drop_points": drop,
        "met": drop <= budget,
        "float_layers": excluded,
        "steps": steps,
    }
