"""Fallback: keep the most harmful layers in float until the outputs verify (by default), or until the
accuracy drop fits the budget (--max-accuracy-drop).

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
from edgec.package.harness.manifest import PolicyFallback
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


# ---------------------------------------------------------------- fallback until the outputs verify

MIN_INT8_MAC_SHARE = 0.8  # an artifact counts as int8 only if at least this share of its MACs run in int8
LATENCY_RUNS = 10


class PolicyJudge:
    """Which outputs of a model fail the verification policy on the build's samples: the build's own
    verification before the backend lowers anything. The QDQ graph is computed in float (onnxruntime,
    unoptimized), as every target's int8 kernels should compute it: one CPU's kernels must not judge
    another's (onnxruntime's S8S8 kernels saturate on AVX2 without VNNI; TensorRT's do not). A graph that
    passes is then run as the artifact will be, where the backend can (its `int8_runner`): the build's
    verification judges those kernels, whose rounding differs (the PP-OCR detector with its first 16 nodes
    float: mask IoU 0.90 computed in float, 0.897 with onnxruntime's u8 kernels)."""

    def __init__(self, checker, policy, kernels: Callable | None = None):
        self.checker, self.policy = checker, policy  # passes.Checker: the samples and the source's outputs
        self.kernels = kernels  # QDQ graph -> a runner (feed -> outputs) of the runtime's int8 kernels, or None

    def failures(self, model: ir.Model) -> dict[str, str]:
        """Output -> what failed (empty when every output passes)."""
        try:
            session, feeds = runtime.session(model, batches=True), list(self.checker.runs)
            names = [output.name for output in session.get_outputs()]
            outputs = self.checker.runs.merge([dict(zip(names, values)) for values in runtime.run_each(
                session, feeds, runtime.input_free(model))], self.checker.outputs)
        except Exception as exc:  # onnxruntime's own errors: a scheme its kernels do not run (TensorRT's)
            logger.info(f"the int8 graph does not run in onnxruntime ({exc}): the target's verification judges it")
            return {}
        failed = self._failed(outputs, "")
        run = self.kernels(model) if self.kernels is not None and not failed else None
        if run is None:
            return failed
        return self.failures_of(run, " with the runtime's int8 kernels")

    def failures_of(self, run: Callable, how: str = "") -> dict[str, str]:
        """Output -> what failed, of what a runner (feed -> outputs, in order) computes on the samples."""
        names = [spec.name for spec in self.checker.outputs]
        outputs = self.checker.runs.merge([dict(zip(names, run(feed))) for feed in self.checker.runs],
                                          self.checker.outputs)
        return self._failed(outputs, how)

    def _failed(self, outputs: dict, how: str) -> dict[str, str]:
        from edgec.package.harness import compare

        checks = compare.compare(outputs, self.checker.expected, self.policy)
        return {name: check.detail + how for name, check in checks.items() if not check.passed}

    def latency_ms(self, model: ir.Model) -> float:
        session = runtime.session(model, optimize=True)
        return _mean_ms(lambda feed: session.run(None, feed), next(iter(self.checker.runs)))


class EngineFallback:
    """A backend's own int8 engine (quantize.choose.Engine) as `to_verify` takes a quantizer and a judge: its
    model with layers float is the engine made again with them float, judged by what its runner computes.
    NNCF's PP-OCR detector missed the mask IoU limit by 0.005, where edgec's own graph needed 59 layers float."""

    float_layers = ()  # none kept float before the fallback

    def __init__(self, engine, judge: PolicyJudge):
        self.engine, self.judge = engine, judge

    def run(self, excluded: tuple[str, ...] = ()):
        return self.engine.keep_float(tuple(excluded)) if excluded else self.engine

    def failures(self, engine) -> dict[str, str]:
        return self.judge.failures_of(engine.run, " with the runtime's int8 kernels")

    def latency_ms(self, engine) -> float:
        return _mean_ms(engine.run, next(iter(self.judge.checker.runs)))


def _mean_ms(run: Callable, feed: dict) -> float:
    """Mean latency of `run(feed)` over LATENCY_RUNS, after one warm-up run."""
    import time

    run(feed)
    started = time.perf_counter()
    for _ in range(LATENCY_RUNS):
        run(feed)
    return 1000.0 * (time.perf_counter() - started) / LATENCY_RUNS


class MacShare:
    """Each node's multiply-accumulates at the shapes of one calibration run, to tell what share of a
    model stays int8."""

    def __init__(self, model: ir.Model, feed: dict[str, np.ndarray]):
        import onnx_ir.passes.common as common

        from edgec import ir as eir
        from edgec.ir import stats

        shaped = eir.clone(model)
        for value in shaped.graph.inputs:
            if value.name in feed:
                value.shape = ir.Shape(feed[value.name].shape)
        common.ShapeInferencePass()(shaped)
        unknown = [node for node in shaped.graph if node.op_type in stats.MAC_OPS and stats.node_macs(node) is None]
        if unknown:
            _shapes_as_run(shaped, unknown, feed)
        self.macs = {node.name: stats.node_macs(node) or 0 for node in shaped.graph}
        self.in_order = [node.name for node in model.graph]  # topological: nearest the inputs first
        self.total = sum(self.macs.values())
        self.weights = {node.name: sum(v.const_value.size for v in node.inputs
                                       if v is not None and v.const_value is not None and v.dtype == ir.DataType.FLOAT)
                        for node in model.graph}

    def int8_share(self, float_nodes) -> float:
        if not self.total:
            return 1.0
        return 1.0 - sum(self.macs.get(name, 0) for name in set(float_nodes)) / self.total

    def added_bytes(self, float_nodes) -> int:
        """float32 instead of int8 weights: 3 bytes more per weight."""
        return 3 * sum(self.weights.get(name, 0) for name in set(float_nodes))


def _shapes_as_run(model: ir.Model, nodes: list[ir.Node], feed: dict[str, np.ndarray]) -> None:
    """Give the inputs and outputs of `nodes` the shapes one onnxruntime run of `feed` computes: where
    static inference stops (a Reshape to a width computed from the input), the MACs are still counted."""
    from edgec import ir as eir

    wanted = {v.name: v for node in nodes for v in (*node.inputs, *node.outputs)
              if v is not None and v.const_value is None and not v.is_graph_input() and not v.is_graph_output()}
    probe = eir.clone(model)
    values = {v.name: v for node in probe.graph for v in node.outputs if v.name in wanted}
    probe.graph.outputs.extend(values.values())
    session = runtime.session(probe)
    names = [output.name for output in session.get_outputs()]
    for name, array in zip(names, session.run(names, {k: v for k, v in feed.items()
                                                         if k in {i.name for i in probe.graph.inputs}})):
        if name in wanted:
            wanted[name].shape = ir.Shape(array.shape)


def to_verify(quantizer, layers: list, judge: PolicyJudge, macs: MacShare, first: ir.Model,
              failed: dict[str, str]) -> tuple[ir.Model, PolicyFallback]:
    """Keep layers float, 1, 2, 4, ... of them (then as many as the floor allows), until every output
    passes the policy; give up (returning plain int8, which the build's verification then fails) before
    less than MIN_INT8_MAC_SHARE of the MACs would stay int8. The most harmful layers go first; where
    that gives up, the layers nearest the inputs.

    A tensor stays quantized while any node next to it is int8, so layers kept float here and there
    leave most of the rounding in place; and rounding near the inputs is amplified by every layer after
    it, which the per-layer harm does not see. On the PP-OCR detector (mask IoU at 0.5) no choice of up to
    128 harmful layers verified (IoU 0 to 0.44), while its first 16 nodes float (5 % of its MACs) reached
    0.90 computed in float."""
    logger.info("int8 fails verification on the build's samples (" + "; ".join(f"{k}: {v}" for k, v in failed.items())
                + "): keeping layers float")
    orders = {"most harmful": [layer.name for layer in layers], "nearest the inputs": macs.in_order}
    gave_up = ""
    for name, ranked in orders.items():
        model, kept, why = _float_until_verified(quantizer, ranked, judge, macs, name)
        if not why:
            record = PolicyFallback(failed, kept, True, macs.int8_share((*quantizer.float_layers, *kept)),
                                    macs.added_bytes(kept), round(judge.latency_ms(model) / judge.latency_ms(first), 3),
                                    order=name)
            logger.info(f"int8 verifies with {len(kept)} layer(s) float, {name} ({', '.join(kept)}): "
                        f"{record.int8_mac_share:.1%} of the MACs int8, +{record.added_bytes / 1024:.0f} KB, "
                        f"{record.latency_ratio:.2f}x plain int8's latency on the build host")
            return model, record
        gave_up += f"{'; ' if gave_up else ''}{name} first: {why}"
    logger.warning(f"int8 does not verify and the fallback gave up: {gave_up}")
    return first, PolicyFallback(failed, [], False, macs.int8_share(quantizer.float_layers), 0, gave_up=gave_up)


def _float_until_verified(quantizer, ranked: list[str], judge: PolicyJudge, macs: MacShare, order: str
                          ) -> tuple[ir.Model | None, list[str], str]:
    """Keep the first 1, 2, 4, ... of `ranked` float, the last step as many as the MAC floor allows, until
    every output passes: (model, kept float, "") or (None, [], why it gave up)."""
    count = 1
    while True:
        excluded = ranked[:count]
        share = macs.int8_share((*quantizer.float_layers, *excluded))
        if share < MIN_INT8_MAC_SHARE:
            return None, [], (f"keeping {count} layers float would leave {share:.0%} of the MACs in int8, "
                              f"under {MIN_INT8_MAC_SHARE:.0%}")
        model = quantizer.run(tuple(excluded))
        still = judge.failures(model)
        logger.info(f"kept {count} layer(s) float, {order} first: " +
                    ("every output passes" if not still else "; ".join(f"{k}: {v}" for k, v in still.items())))
        if not still:
            return model, excluded, ""
        if count >= len(ranked):
            return None, [], "every quantized layer was tried"
        doubled = min(2 * count, len(ranked))
        within_floor = (n for n in range(doubled, count, -1)
                        if macs.int8_share((*quantizer.float_layers, *ranked[:n])) >= MIN_INT8_MAC_SHARE)
        count = next(within_floor, doubled)  # where doubling crosses the floor, as many as it allows
