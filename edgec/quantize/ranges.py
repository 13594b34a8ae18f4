"""Mixed-range heads: a Concat whose inputs' calibrated ranges differ by more than a factor.

One int8 scale over box coordinates (0-416 px) and scores (0-1) leaves the scores a handful of
levels: on the corpus YOLOX detector (ddddocr_det) box F1 against fp32 fell to 0.71 on onnxruntime.
Where nothing after such a Concat is a convolution or matmul (a decode head), each input keeps its
own scale and the Concat and everything after it up to the outputs stay float: a few element-wise
operations on one tensor, no multiply-accumulates. A mixed-range Concat that feeds MAC layers is
only reported: keeping its consumers float would give up int8 where it pays.

An attention mask is the same mix in an Add: padding positions get float32's lowest (or -1e4) added to
scores of a few units, and one int8 scale over the sum leaves every score zero (MiniLM's sentence
embeddings fell to cosine 0.09). The Add and the Softmax after it stay float, each operand on its own scale.

A Log over values whose smallest lies below one int8 step of their range (a log-magnitude spectrum over
orders of magnitude) reads zeros where the signal was quiet: basic-pitch's notes missed by up to 0.72 in
probability, however many of its layers the fallback kept float. Everything up to such a Log (the front end,
audio in to log spectrum) stays float, where that leaves MIN_INT8_MAC_SHARE of the MACs int8.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir

from edgec.ir.stats import MAC_OPS
from edgec.package.harness.manifest import MixedRangeHead

RATIO = 16.0  # inputs whose ranges differ by more than this share one scale badly
LEVELS = 255  # int8 steps over a range: values below high / LEVELS round to zero


@dataclass(frozen=True)
class Span:
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


def calibrated_spans(cache: Path) -> dict[str, Span]:
    """Tensor name -> calibrated range, from onnxruntime's calibration cache."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    return {name: Span(float(np.min(data.range_value[0])), float(np.max(data.range_value[1])))
            for name, data in load_tensors_data(cache).data.items()}


def _closure(node: ir.Node, neighbours) -> list[ir.Node]:
    """`node` and every node reached from it by `neighbours`, directly or not."""
    seen, order, stack = set(), [], [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        stack.extend(neighbours(current))
    return order


def downstream(node: ir.Node) -> list[ir.Node]:
    """`node` and every node that consumes its results, directly or not."""
    return _closure(node, lambda n: [use.node for out in n.outputs for use in out.uses()])


def upstream(node: ir.Node) -> list[ir.Node]:
    """`node` and every node it depends on, directly or not."""
    return _closure(node, lambda n: [v.producer() for v in n.inputs if v is not None and v.producer() is not None])


def mixed_range_heads(model: ir.Model, spans: dict[str, Span], ratio: float = RATIO) -> list[MixedRangeHead]:
    """Every Concat whose inputs' ranges differ by more than `ratio`, with the nodes to keep float
    (empty where the Concat feeds multiply-accumulate layers)."""
    heads = []
    for node in model.graph:
        if node.op_type != "Concat":
            continue
        widths = [spans[v.name].width for v in node.inputs if v is not None and v.name in spans]
        positive = [w for w in widths if w > 0]
        if len(positive) < 2 or max(positive) <= ratio * min(positive):
            continue
        after = downstream(node)
        head = not any(n.op_type in MAC_OPS for n in after)
        heads.append(MixedRangeHead(node.name, [round(w, 6) for w in widths], round(max(positive) / min(positive), 1),
                                    [n.name for n in after] if head else []))
    return heads


def additive_masks(model: ir.Model, spans: dict[str, Span], ratio: float = RATIO) -> list[MixedRangeHead]:
    """Every Add feeding a Softmax whose operands' ranges differ by more than `ratio` (an additive mask on
    attention scores), with the nodes to keep float: the Add and the Softmax."""
    masks = []
    for node in model.graph:
        softmaxes = [use.node for use in node.outputs[0].uses() if use.node.op_type == "Softmax"] \
            if node.op_type == "Add" else []
        widths = [spans[v.name].width for v in node.inputs if v is not None and v.name in spans]
        if not softmaxes or len(widths) != 2 or min(widths) <= 0 or max(widths) <= ratio * min(widths):
            continue
        masks.append(MixedRangeHead(node.name, [round(w, 6) for w in widths], round(max(widths) / min(widths), 1),
                                    [node.name, *(n.name for n in softmaxes)]))
    return masks


def log_front_ends(model: ir.Model, spans: dict[str, Span], int8_share) -> list[MixedRangeHead]:
    """Every Log whose input's smallest calibrated value is under one int8 step, with the nodes to keep float:
    the Log and all before it, or none where that would leave less than MIN_INT8_MAC_SHARE of the MACs int8
    (`int8_share(names)`: the share left with those nodes float)."""
    from edgec.quantize.fallback import MIN_INT8_MAC_SHARE

    fronts = []
    for node in model.graph:
        span = spans.get(node.inputs[0].name) if node.op_type == "Log" else None
        if span is None or span.high <= 0 or span.high <= LEVELS * max(span.low, 0.0):
            continue
        names = [n.name for n in upstream(node)]
        fronts.append(MixedRangeHead(node.name, [round(span.width, 6)],
                                     round(span.high / max(span.low, span.high * 1e-30), 1),
                                     names if int8_share(names) >= MIN_INT8_MAC_SHARE else []))
    return fronts
