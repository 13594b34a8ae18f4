"""Accuracy-driven fallback: keep the most harmful layers in float until the drop fits the budget.

Accuracy is top-1 against labels when the evaluation data has them, else top-1 agreement
with the float model. Both models run in onnxruntime with its real int8 kernels.
"""
from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from edgec.ir import runtime
from edgec.quantize.data import CalibrationData

GROUPS = 8  # the layers are released in about this many groups, most harmful first


def predictions(model: ir.Model, data: CalibrationData) -> np.ndarray:
    """Top-1 class of the first output for every evaluation sample, with onnxruntime's int8 kernels."""
    outputs = runtime.run_batched(runtime.session(model, optimize=True), model, data.arrays)
    logits = next(iter(outputs.values()))
    return logits.reshape(len(logits), -1).argmax(1)


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


def run(quantizer, layers: list[dict], judge: AccuracyJudge, budget: float, first: ir.Model, log) -> tuple:
    """Exclude groups of the most harmful layers until drop <= budget; return (model, record)."""
    accuracy = judge(first)
    steps = [{"float_layers": [], "accuracy": accuracy, "drop": judge.float_accuracy - accuracy}]
    log(f"int8 {judge.measure}: {accuracy:.2f} % (fp32 {judge.float_accuracy:.2f} %, budget {budget} points)")
    model, excluded = first, []
    size = max(1, math.ceil(len(layers) / GROUPS))
    ranked = [layer["name"] for layer in layers]
    while judge.float_accuracy - accuracy > budget and len(excluded) < len(ranked):
        group = ranked[len(excluded) : len(excluded) + size]
        excluded += group
        model = quantizer.run(tuple(excluded))
        before, accuracy = accuracy, judge(model)
        steps.append({"float_layers": group, "accuracy": accuracy, "drop": judge.float_accuracy - accuracy,
                      "recovered_points": accuracy - before})
        log(f"kept {', '.join(group)} in float: {judge.measure} {accuracy:.2f} %")
    drop = judge.float_accuracy - accuracy
    record = {
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
    if drop > budget:
        log(f"warning: the accuracy drop {drop:.2f} points still exceeds {budget} with every layer tried")
    return model, record
