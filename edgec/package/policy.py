"""How an artifact's outputs are judged: by what each output means, at the build's precision.

Each output gets a kind (KINDS) from the graph that makes it, or from the user (--output-kind
NAME=KIND), and each kind its own measure (the issue's table): probabilities by absolute error and
top-1 agreement, a sequence's per-step probabilities or logits (a CTC recogniser's) by their decoded strings,
logits by top-1 agreement, a detector's per-anchor score logits (`scores`) as tensors with their
sigmoid scores' error and decided anchors' IoU beside, embeddings by cosine, masks by IoU at 0.5,
boxes by their error in pixels, integers exactly. fp32 promises the source model's numbers, so every float
output is held to 1e-4 of its range there. A target TOML's [verification.PRECISION] table may
tighten a limit, never loosen it; only the user loosens one (--tolerance KIND.MEASURE=LIMIT).

int8 top-1 agreement is judged on the decisive rows (compare.top1_decisive: the reference's top class
leads by 0.2 in probability), with the agreement over all rows reported beside it. The issue's 0.95 over
all rows is out of reach of any int8 MobileNetV2 on low-confidence inputs: over its 64 calibration crops
onnxruntime's int8 agrees on 70 % (4 of the 8 verification crops), NNCF's on 84 %, while on the 36
decisive crops it agrees on all. fp16 keeps 0.99 over all rows.

The build writes these policies into the manifest (verification.reference and .build_host), so
the device judges with exactly what the build decided.
"""
from __future__ import annotations

import onnx_ir as ir

from edgec.errors import InputError
from edgec.ir.stats import RECURRENT
from edgec.package.harness import compare
from edgec.package.harness.manifest import ComparisonPolicy, Criterion, OutputPolicy

KINDS = ("probabilities", "sequences", "logits", "scores", "embeddings", "masks", "boxes", "integers", "tensor")
# Limits per kind and precision. "tensor" is an output nothing identifies: in fp16 held to the range rule
# as before, in int8 to the embeddings' cosine (the 0.25-of-range rule passed a collapsed detector).
FP16_RANGE = 2e-2
LIMITS: dict[str, dict[str, dict[str, float]]] = {
    "probabilities": {"fp16": {"max_abs_err": 0.01, "top1_agreement": 0.99},
                      "int8": {"max_abs_err": 0.05, "top1_decisive": 0.95}},
    "logits": {"fp16": {"top1_agreement": 0.99}, "int8": {"top1_decisive": 0.95}},
    # per-step class probabilities of a CTC recogniser: the task is the decoded string, not each step's numbers
    "sequences": {"fp16": {"strings_equal": 0.99}, "int8": {"strings_decisive": 0.95}},
    "embeddings": {"fp16": {"cosine": 0.999}, "int8": {"cosine": 0.98}},
    "masks": {"fp16": {"mask_iou": 0.98}, "int8": {"mask_iou": 0.9}},
    "boxes": {"fp16": {"box_err": 1.0}, "int8": {"box_err": 2.0}},
    "tensor": {"fp16": {"rel_err": FP16_RANGE}, "int8": {"cosine": 0.98}},
    # one logit per anchor of a detector, which its decoder passes through a sigmoid: judged as a tensor
    # still, the sigmoid scores' error and the decided anchors' IoU reported beside it (BlazeFace int8 keeps
    # its faces, box F1 1.0, while losing a third to half of the anchors above 0.5: each face has ~30)
    "scores": {"fp16": {"rel_err": FP16_RANGE}, "int8": {"cosine": 0.98}},
}
FP32 = {"rel_err": 1e-4}  # every float output in fp32: the kernels' noise, not a precision's
EXACT = {"max_abs_err": 0.0}  # integer outputs at every precision
# Measures shown beside the judged ones.
REPORTED = {"logits": ["top1_agreement", "top5_agreement"], "probabilities": ["top1_agreement", "top5_agreement"],
            "sequences": ["strings_equal", "top1_decisive"], "embeddings": [], "masks": [],
            "boxes": [], "integers": [], "tensor": ["cosine"],
            "scores": ["score_err", "anchors_iou", "cosine"]}
# Allowed difference between the device and the build host running the same artifact.
HOST_TOLERANCE = 1e-5

# Operators that move or reshape values without changing what they mean.
_TRANSPARENT = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice", "Split",
                          "Cast"})
_NORMS = frozenset({"ReduceL2", "Sqrt", "ReduceSumSquare", "LpNormalization"})
_POOLS = frozenset({"ReduceMean", "GlobalAveragePool", "GlobalMaxPool", "ReduceMax"})
_SPATIAL = frozenset({"Conv", "ConvTranspose", "Resize", "BatchNormalization"})
_LINEAR = frozenset({"Gemm", "MatMul", "Conv", "Add"})
_CONVOLUTIONS = frozenset({"Conv"})


def limits(kind: str, precision: str) -> dict[str, float]:
    if kind == "integers":
        return dict(EXACT)
    return dict(FP32) if precision == "fp32" else dict(LIMITS[kind][precision])


def _maker(value: ir.Value) -> ir.Node | None:
    """The node that gives `value` its meaning: its producer, past reshapes and transposes."""
    node = value.producer()
    while node is not None and node.op_type in _TRANSPARENT and node.inputs and node.inputs[0] is not None:
        node = node.inputs[0].producer()
    return node


def _made_of(node: ir.Node | None, op_types: frozenset[str]) -> bool:
    """Whether `node` is one of `op_types`, or a Concat of their outputs (one per layer or feature map)."""
    if node is not None and node.op_type == "Concat":
        makers = [_maker(v) if v is not None else None for v in node.inputs]
        return all(maker is not None and maker.op_type in op_types for maker in makers)
    return node is not None and node.op_type in op_types


def _upstream_ops(value: ir.Value | None, depth: int = 4) -> set[str]:
    """The operators within `depth` steps above `value`."""
    node = value.producer() if value is not None else None
    if node is None or depth == 0:
        return set()
    return {node.op_type}.union(*(_upstream_ops(i, depth - 1) for i in node.inputs))


def _anchor_scores(value: ir.Value, node: ir.Node | None) -> bool:
    """One logit per anchor, [batch, anchors, 1], from convolution heads (one per feature map,
    concatenated): a detector's score head. With more than one value per anchor a head's outputs may
    as well be box offsets, which nothing in the graph tells apart."""
    shape = value.shape
    if shape is None or shape.rank() != 3 or shape[-1] != 1 or shape[1] == 1:
        return False
    return _made_of(node, _CONVOLUTIONS)


def classify(value: ir.Value) -> str:
    """What an output means, read from the graph that makes it (KINDS)."""
    dtype = value.dtype
    if dtype is not None and not dtype.is_floating_point():
        return "integers"
    node = _maker(value)
    rank = value.shape.rank() if value.shape is not None else None
    last = value.shape[-1] if rank else None
    op = node.op_type if node is not None else ""
    if _made_of(node, RECURRENT):
        return "embeddings"  # a recurrent layer's outputs or states (stacked layers' concatenated): learned vectors
    if op in ("Softmax", "LogSoftmax") and rank == 3 and isinstance(last, int) and last > 1:
        return "sequences"  # classes per step of a sequence (batch, steps, classes): a recogniser's
    if op == "Softmax":
        return "probabilities"
    if op == "Sigmoid":  # over an image (rank 4, or a convolution's map where the shape is not known) a mask
        spatial = rank == 4 or (rank is None and _maker(node.inputs[0]) is not None
                                and _maker(node.inputs[0]).op_type in _SPATIAL)
        return "masks" if spatial else "probabilities"
    if op == "LogSoftmax":
        return "logits"
    if op == "LpNormalization" or (op == "Div" and _NORMS & _upstream_ops(node.inputs[1])):
        return "embeddings"
    if op in _POOLS or (op == "Div" and "ReduceSum" in _upstream_ops(node.inputs[1])):
        return "embeddings"  # pooled features: mean pooling over positions or tokens
    if _anchor_scores(value, node):
        return "scores"
    if last == 4:
        return "boxes"
    if op in _LINEAR and isinstance(last, int) and last > 1:
        if rank == 2:
            return "logits"  # a classifier's scores
        if rank == 3 and op != "Conv":
            return "sequences"  # logits per step of a sequence: a CTC recogniser's (ddddocr's, a captcha CRNN's)
    return "tensor"


def parse_kinds(text: str | None, outputs: list[str]) -> dict[str, str]:
    """--output-kind NAME=KIND[,NAME=KIND...]: the user's word on what outputs mean."""
    given = {}
    for item in filter(None, (text or "").split(",")):
        name, _, kind = item.partition("=")
        name, kind = name.strip(), kind.strip()
        if name not in outputs:
            raise InputError(f"--output-kind {item}: the model has no output '{name}' (it has {', '.join(outputs)})")
        if kind not in KINDS:
            raise InputError(f"--output-kind {item}: unknown kind '{kind}'; choose one of {', '.join(KINDS)}")
        given[name] = kind
    return given


def parse_limits(text: str | None, where: str) -> dict[tuple[str, str], float]:
    """KIND.MEASURE=LIMIT[,...] (--tolerance): limits keyed by (kind, measure)."""
    parsed = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        kind, _, measure = key.strip().partition(".")
        if kind not in KINDS or measure not in compare.MEASURES:
            raise InputError(f"{where} {item}: expected KIND.MEASURE=LIMIT with KIND one of {', '.join(KINDS)} "
                             f"and MEASURE one of {', '.join(compare.MEASURES)}")
        try:
            parsed[(kind, measure)] = float(value)
        except ValueError:
            raise InputError(f"{where} {item}: the limit must be a number") from None
    return parsed


def _looser(measure: str, limit: float, than: float) -> bool:
    return limit < than if measure in compare.AGREEMENTS else limit > than


def output_policy(kind: str, precision: str, target_limits: dict, user_limits: dict, where: str) -> OutputPolicy:
    """One kind's criteria: the table's, tightened by the target, then as the user sets them."""
    chosen = limits(kind, precision)
    for (k, measure), limit in target_limits.items():
        if k == kind and measure in chosen and _looser(measure, limit, chosen[measure]):
            raise InputError(f"{where}: {kind}.{measure} = {limit:g} is looser than edgec's {chosen[measure]:g}; "
                             "a target may only tighten a limit (loosen one with --tolerance)")
        if k == kind:
            chosen[measure] = limit
    chosen.update({m: limit for (k, m), limit in user_limits.items() if k == kind})
    return OutputPolicy(kind, [Criterion(m, limit) for m, limit in chosen.items()],
                        [m for m in REPORTED[kind] if m not in chosen])


def reference_policy(model: ir.Model, precision: str, target=None, output_kinds: str | None = None,
                     tolerance: str | None = None) -> ComparisonPolicy:
    """Outputs against the source model's, each by its kind (the graph's, or the user's word)."""
    names = [v.name for v in model.graph.outputs]
    given = parse_kinds(output_kinds, names)
    where = f"target {target.name}: [verification.{precision}]" if target is not None else ""
    target_limits = parse_limits(",".join(f"{k}={v}" for k, v in (target.verification.get(precision, {}).items()
                                                                   if target is not None else ())), where)
    user_limits = parse_limits(tolerance, "--tolerance")
    policies = {v.name: output_policy(given.get(v.name) or classify(v), precision, target_limits, user_limits, where)
                for v in model.graph.outputs}
    return ComparisonPolicy(output_policy("tensor", precision, target_limits, user_limits, where), policies)


def range_policy(tolerance: float) -> ComparisonPolicy:
    """Every output within `tolerance` of the reference's range (errors under 1e-6 count as none); top-1
    agreement shown beside it."""
    return ComparisonPolicy(OutputPolicy("tensor", [Criterion("rel_err", tolerance)], ["top1_agreement"]))


def host_policy() -> ComparisonPolicy:
    """A device against the build host running the same artifact."""
    return range_policy(HOST_TOLERANCE)
