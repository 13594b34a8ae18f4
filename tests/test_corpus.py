"""The corpus of real published models (models/corpus): what the import issue requires it to cover,
that shape arithmetic is folded on every model, and that every model builds faithfully in fp32 for
onnxruntime and openvino-cpu on its real inputs (tvm-x86: test_corpus_tvm.py)."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from corpus_checks import assert_fp32_faithful, corpus_params, require_fetched
from models.corpus.reference import reference_outputs
from models.corpus.registry import MODELS, FailureClass, graph_classes

C = FailureClass
# Shown by the outputs, the matrix or `batch_axes` rather than by the graph itself.
NOT_IN_GRAPH = {C.FOREIGN_LIBRARY, C.MIXED_RANGE_HEAD, C.BATCH_NOT_LEADING}
SHAPE_INPUTS = {"Pad": (1,), "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Resize": (1, 2, 3)}
LARGE = 1_000_000  # a folded value this large may stay computed (the issue's exemption)


def test_the_corpus_covers_what_the_issue_asks():
    families = {m.family for m in MODELS}
    assert len(MODELS) >= 12 and len(families) >= 5, (len(MODELS), families)
    assert {"object detector", "audio", "transformer", "OCR", "image classifier"} <= families
    assert any(C.RECURRENT_OPS in m.classes for m in MODELS), "a sequence model (LSTM/GRU)"
    assert any(m.family == "image classifier" and "torch" not in m.exporter for m in MODELS), \
        "a classic CNN from a non-torch exporter"
    assert set(C) == set().union(*(m.classes for m in MODELS)), set(C) - set().union(*(m.classes for m in MODELS))
    for source in (s for m in MODELS for s in m.sources):
        assert "==" in source.requirement and len(source.sha256) == 64, source


@pytest.mark.parametrize("model", corpus_params())
def test_declared_failure_classes_are_in_the_model(model):
    require_fetched(model)
    assert graph_classes(model.onnx_path) == model.classes - NOT_IN_GRAPH
    assert (C.BATCH_NOT_LEADING in model.classes) == any(a not in (0, None) for a in model.batch_axes.values())
    if C.MIXED_RANGE_HEAD in model.classes:  # some rows mix values whose ranges differ by more than 16x
        spans = [np.ptp(out.reshape(-1, out.shape[-1]), axis=0) for out in reference_outputs(model).values()]
        assert any(s.max() > 16 * s.min() > 0 for s in spans)


def optimized(model) -> ir.Model:
    """edgec's front half on the model as `edgec build` runs it: load, fix shapes, optimize."""
    from edgec import ir as eir
    from edgec.passes import optimize

    graph = eir.load(model.onnx_path)
    eir.apply_input_specs(graph, [eir.InputSpec(n, d) for n, d in model.input_shapes.items()])
    eir.resolve_static_shapes(graph)
    optimized_graph, _ = optimize(graph)
    return optimized_graph


def _large(value: ir.Value) -> bool:
    return value.shape is not None and value.shape.is_static() and int(np.prod(value.shape.numpy())) > LARGE


@pytest.mark.parametrize("model", corpus_params())
def test_shape_arithmetic_is_folded(model):
    require_fetched(model)
    graph = optimized(model)
    left = []
    for node in ir.traversal.RecursiveGraphIterator(graph.graph):
        if node.op_type in ("Shape", "Size", "ConstantOfShape", "Range") and not _large(node.outputs[0]):
            left.append(f"{node.op_type} '{node.name}'")
        for index in SHAPE_INPUTS.get(node.op_type, ()):
            value = node.inputs[index] if index < len(node.inputs) else None
            if value is not None and value.const_value is None and not _large(node.outputs[0]):
                left.append(f"{node.op_type} '{node.name}' input {index}")
    assert not left, f"{len(left)} left: {', '.join(left[:8])}"


# captcha_crnn's failure classes are all other models' too, and openvino-cpu compiles its unrolled LSTM for
# minutes: make test builds it on onnxruntime only.
OPENVINO_FULL_ONLY = {"captcha_crnn"}


def _model_targets():
    for model in corpus_params():
        for target in ("onnxruntime", "openvino-cpu"):
            full = target == "openvino-cpu" and model.id in OPENVINO_FULL_ONLY
            yield pytest.param(*model.values, target, id=f"{model.id}-{target}",
                               marks=pytest.mark.full if full else ())


@pytest.mark.slow
@pytest.mark.parametrize("model, target", _model_targets())
def test_fp32_builds_faithfully(model, target, tmp_path):
    assert_fp32_faithful(model, target, tmp_path)
