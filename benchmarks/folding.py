"""Shape-specialized constant folding: which evaluator should edgec use?

Candidates, each given the same models with every input shape fixed:
- onnxscript's constant folder (edgec's choice, in edgec.passes.constants), after shape inference;
- onnxruntime's own basic optimizations (constant folding in the session, model saved back);
- onnxslim (a simplifier built on onnx shape inference and its own folding);
- onnx's reference evaluator, node by node on constant inputs, with Shape from inferred shapes.

For each: shape arithmetic left (Shape/Size/ConstantOfShape/Range nodes and computed
Pad/Reshape/Expand/Tile/Resize parameters), nodes after, time, and the max abs error of the
folded model against the source on the same inputs, relative to the output range.

    python benchmarks/folding.py      # writes benchmarks/results/folding.{md,json}
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from common import cpu_name, load_average, write_results  # noqa: E402

SHAPE_OPS = {"Shape", "Size", "ConstantOfShape", "Range"}
SHAPE_INPUTS = {"Pad": 1, "Reshape": 1, "Expand": 1, "Tile": 1, "Resize": 2}


def shape_arithmetic(model: onnx.ModelProto) -> int:
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    left = 0
    for node in model.graph.node:
        left += node.op_type in SHAPE_OPS
        first = SHAPE_INPUTS.get(node.op_type)
        if first is not None:
            left += sum(1 for i, name in enumerate(node.input) if i >= first and name and name not in constants)
    return left


def static_model(path: Path, shapes: dict) -> onnx.ModelProto:
    model = onnx.load(path)
    for value in model.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, shapes[value.name]):
                dim.Clear()
                dim.dim_value = size
    return model


def with_edgec(model: onnx.ModelProto, tmp: Path) -> onnx.ModelProto:
    import onnx_ir.passes.common as common

    from edgec.passes.constants import FoldConstantSubgraphsPass, LiftConstantsPass

    graph = ir.from_proto(model)
    for make in (LiftConstantsPass, common.ShapeInferencePass, FoldConstantSubgraphsPass, common.RemoveUnusedNodesPass):
        make()(graph)
    return ir.to_proto(graph)


def with_onnxruntime(model: onnx.ModelProto, tmp: Path) -> onnx.ModelProto:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp / "ort.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(tmp / "ort.onnx")


def with_onnxslim(model: onnx.ModelProto, tmp: Path) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def with_reference(model: onnx.ModelProto, tmp: Path) -> onnx.ModelProto:
    """Node by node: Shape from inferred static shapes, every node with constant inputs evaluated."""
    from onnx import helper, numpy_helper, shape_inference
    from onnx.reference import ReferenceEvaluator

    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input)}
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    opset = model.opset_import
    kept = []
    for node in model.graph.node:
        if node.op_type == "Shape" and None not in shapes.get(node.input[0], [None]):
            values[node.output[0]] = np.array(shapes[node.input[0]], np.int64)
            continue
        if node.input and all(not n or n in values for n in node.input):
            feeds = {n: values[n] for n in node.input if n}
            graph = helper.make_graph([node], "n", [helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()],
                [helper.make_value_info(o, onnx.TypeProto()) for o in node.output])
            try:
                outputs = ReferenceEvaluator(helper.make_model(graph, opset_imports=opset)).run(None, feeds)
                values.update(zip(node.output, outputs))
                continue
            except Exception:
                pass
        kept.append(node)
    used = {n for node in kept for n in node.input} | {o.name for o in model.graph.output}
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in values.items() if n in used]
    graph = helper.make_graph(kept, model.graph.name, model.graph.input, model.graph.output, inits)
    return helper.make_model(graph, opset_imports=opset)


CANDIDATES = {"onnxscript folder (edgec)": with_edgec, "onnxruntime basic": with_onnxruntime,
              "onnxslim": with_onnxslim, "onnx reference evaluator": with_reference}


def error(model: onnx.ModelProto, reference: list, feeds: dict) -> float:
    outputs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    return max(float(np.max(np.abs(a - b))) / (float(np.ptp(b)) or 1.0) for a, b in zip(outputs, reference))


def models(work: Path) -> list[tuple[str, Path, dict, dict]]:
    """(name, path, input shapes, feeds): real-weight models with shape arithmetic, with their real inputs."""
    import variants
    from models.corpus.registry import MODELS, FailureClass

    rng = np.random.default_rng(0)
    same_pad = variants.same_pad_mobilenet(work / "same_pad.onnx")
    found = [("MobileNetV2, run-time TF-SAME pads, opset 11", same_pad, {"input": [1, 3, 224, 224]},
              {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)})]
    for entry in MODELS:
        if FailureClass.SHAPE_ARITHMETIC not in entry.classes or not entry.inputs_path.exists():
            continue
        with np.load(entry.inputs_path) as data:
            real = {name: data[name] for name in data.files}
        shapes = {name: list(entry.input_shapes.get(name, (1, *real[name].shape[1:]))) for name in real}
        feeds = {name: value[:1].reshape(shapes[name]) for name, value in real.items()}  # the first real input
        found.append((f"{entry.name} ({entry.exporter})", entry.onnx_path, shapes, feeds))
    return found


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgec-folding-") as tmp:
        work = Path(tmp)
        for name, path, shapes, feeds in models(work):
            source = static_model(path, shapes)
            reference = ort.InferenceSession(source.SerializeToString(),
                                             providers=["CPUExecutionProvider"]).run(None, feeds)
            for candidate, fold in CANDIDATES.items():
                start = time.perf_counter()
                try:
                    folded = fold(source, work)
                except Exception as exc:
                    rows.append({"model": name, "candidate": candidate, "failed": f"{type(exc).__name__}: {exc}"[:120]})
                    continue
                seconds = time.perf_counter() - start
                try:
                    max_error = error(folded, reference, feeds)
                except Exception as exc:  # noqa: BLE001 - a folded model onnxruntime refuses is a result too
                    rows.append({"model": name, "candidate": candidate,
                                 "failed": f"the folded model does not run: {str(exc).splitlines()[0][-100:]}"})
                    continue
                rows.append({"model": name, "candidate": candidate, "seconds": round(seconds, 2),
                             "nodes": len(folded.graph.node), "shape_arithmetic_left": shape_arithmetic(folded),
                             "source_shape_arithmetic": shape_arithmetic(source),
                             "max_error_of_range": max_error})
                print(rows[-1])
    lines = ["| model | evaluator | shape arithmetic left (of) | nodes after | seconds | max error / range |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['model']} | {r['candidate']} | failed: {r['failed']} | | | |")
        else:
            lines.append(f"| {r['model']} | {r['candidate']} | {r['shape_arithmetic_left']} "
                         f"({r['source_shape_arithmetic']}) | {r['nodes']} | {r['seconds']} "
                         f"| {r['max_error_of_range']:.2g} |")
    write_results("folding", {"cpu": cpu_name(), "load": load_average(), "rows": rows},
                  f"# Constant folding evaluators ({cpu_name()}, load {load_average()})\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
