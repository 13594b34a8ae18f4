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
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir

from edgec.package.harness.manifest import MixedRangeHead

RATIO = 16.0  # inputs whose ranges differ by more than this share one scale badly
MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "LSTM", "GRU", "RNN"})


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


def downstream(node: ir.Node) -> list[ir.Node]:
    """`node` and every node that consumes its results, directly or not."""
    seen, order, stack = set(), [], [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        stack.extend(use.node for out in current.outputs for use in out.uses())
    return order


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
