"""The verification policy: what each output means, read from real models' graphs, and the limits per kind."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
import pytest

from conftest import DIGITS, MOBILENET, ROOT
from edgec.errors import InputError
from edgec.package import policy
from edgec.package.harness import compare
from edgec.package.harness.manifest import Criterion, OutputPolicy
from edgec.targets import load_target

CORPUS = ROOT / "models" / "corpus" / "cache"


@pytest.mark.parametrize("path, expected", [
    (MOBILENET / "mobilenet_v2.onnx", {"logits": "logits"}),
    (DIGITS / "digits_cnn.onnx", {"logits": "logits"}),
    (CORPUS / "fer_emotion.onnx", {"predictions": "probabilities"}),  # Softmax
    (CORPUS / "ppocr_det.onnx", {"fetch_name_0": "masks"}),  # Sigmoid over an image
    (CORPUS / "ppocr_rec.onnx", {"fetch_name_0": "sequences"}),  # Softmax per step: a CTC recogniser
    (CORPUS / "captcha_crnn.onnx", {"logits": "sequences"}),  # logits per step, [steps, batch, classes]: CTC
    (CORPUS / "minilm_l6.onnx", {"embedding": "embeddings"}),  # mean-pooled, L2-normalised
    # its 3 LSTM layers' states, concatenated and carried to the next call: vectors, judged like the embedding
    (CORPUS / "resemblyzer_stream.onnx", {"embedding": "embeddings", "h": "embeddings", "c": "embeddings"}),
    (CORPUS / "ddddocr_det.onnx", {"detections": "tensor"}),  # boxes and scores in one tensor: no single kind
    (CORPUS / "blazeface.onnx", {"classificators": "scores", "regressors": "tensor"}),  # one logit per anchor
])
def test_outputs_are_classified_from_the_graph(path, expected):
    model = ir.load(path)
    assert {v.name: policy.classify(v) for v in model.graph.outputs} == expected


def test_a_recurrent_layers_outputs_are_judged_as_vectors():
    """A GRU's sequence and its last state (squeezed, as streaming models return it) are judged by cosine,
    like the embedding a recurrent encoder makes of them, not by the range rule meant for unknown tensors."""
    from onnx import TensorProto, helper

    weights = [helper.make_tensor(name, TensorProto.FLOAT, shape, np.zeros(shape, np.float32).ravel())
               for name, shape in (("W", [1, 12, 3]), ("R", [1, 12, 4]))]
    nodes = [helper.make_node("GRU", ["x", "W", "R"], ["y", "y_h"], hidden_size=4),
             helper.make_node("Squeeze", ["y_h"], ["h"])]
    graph = helper.make_graph(nodes, "gru", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, 1, 4]),
                               helper.make_tensor_value_info("h", TensorProto.FLOAT, None)], weights)
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]))
    assert {v.name: policy.classify(v) for v in model.graph.outputs} == {"y": "embeddings", "h": "embeddings"}
    assert policy.reference_policy(model, "fp16").policy("h").criteria == [Criterion("cosine", 0.999)]


def test_each_kind_gets_the_issues_limits_and_fp32_keeps_the_kernels_bound():
    model = ir.load(CORPUS / "ppocr_det.onnx")
    masks = policy.reference_policy(model, "fp16").policy("fetch_name_0")
    assert masks.kind == "masks" and masks.criteria == [Criterion("mask_iou", 0.98)]
    assert policy.reference_policy(model, "int8").policy("fetch_name_0").criteria == [Criterion("mask_iou", 0.9)]
    assert policy.reference_policy(model, "fp32").policy("fetch_name_0").criteria == [Criterion("rel_err", 1e-4)]
    logits = policy.reference_policy(ir.load(MOBILENET / "mobilenet_v2.onnx"), "int8").policy("logits")
    assert logits.criteria == [Criterion("top1_decisive", 0.95)]
    assert logits.report == ["top1_agreement", "top5_agreement"]


def test_int8_agreement_counts_the_rows_the_reference_decides():
    ref = np.log(np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]]))  # logits; row 1 a near-tie
    flipped_tie = ref.copy()
    flipped_tie[1] = ref[1, [1, 0, 2]]
    assert compare.top1_agreement(flipped_tie, ref) == pytest.approx(2 / 3)
    assert compare.top1_decisive(flipped_tie, ref) == 1.0  # rows 0 and 2 lead by >= 0.2: unchanged
    flipped_sure = ref[:, [2, 1, 0]]
    assert compare.top1_decisive(flipped_sure, ref) == 0.0
    probabilities = np.exp(ref)
    assert compare.top1_decisive(np.exp(flipped_tie), probabilities) == 1.0  # taken as they are


def test_the_user_names_kinds_and_loosens_a_target_only_tightens():
    model = ir.load(CORPUS / "ppocr_det.onnx")
    boxes = policy.reference_policy(model, "int8", output_kinds="fetch_name_0=boxes").policy("fetch_name_0")
    assert boxes.kind == "boxes" and boxes.criteria == [Criterion("box_err", 2.0)]
    loose = policy.reference_policy(model, "int8", tolerance="masks.mask_iou=0.8").policy("fetch_name_0")
    assert loose.criteria == [Criterion("mask_iou", 0.8)]
    target = load_target("onnxruntime")
    tight = dataclasses.replace(target, verification={"int8": {"masks.mask_iou": 0.95}})
    assert policy.reference_policy(model, "int8", tight).policy("fetch_name_0").criteria == [Criterion("mask_iou", 0.95)]
    with pytest.raises(InputError, match="looser than edgec's 0.9; a target may only tighten"):
        policy.reference_policy(model, "int8", dataclasses.replace(target, verification={"int8": {"masks.mask_iou": 0.5}}))
    with pytest.raises(InputError, match="no output 'scores'"):
        policy.reference_policy(model, "int8", output_kinds="scores=probabilities")
    with pytest.raises(InputError, match="unknown kind 'heatmap'"):
        policy.reference_policy(model, "int8", output_kinds="fetch_name_0=heatmap")
    with pytest.raises(InputError, match="KIND.MEASURE=LIMIT"):
        policy.reference_policy(model, "int8", tolerance="masks.iou=0.5")


def test_masks_boxes_and_embeddings_have_their_own_measures():
    rng = np.random.default_rng(0)
    mask = (rng.random((2, 1, 32, 32)) > 0.7).astype(float)
    half = mask.copy()
    half[0, 0, :16] = 0.0  # one run loses the top half of its mask
    iou = compare.check_output(half, mask, OutputPolicy("masks", [Criterion("mask_iou", 0.9)]))
    assert not iou.passed and iou.measures["mask_iou"] == pytest.approx(
        half[0].sum() / mask[0].sum(), abs=1e-9)
    boxes = np.array([[[0.0, 0.0, 300.0, 200.0]]])
    # 1 % of the 300 px range is 3 px: an error of 4.5 px is 1.5 box units
    assert compare.box_err(boxes + [0, 0, 4.5, 0], boxes) == pytest.approx(1.5)
    assert compare.box_err(np.array([[0.2, 0.5]]), np.array([[0.1, 0.5]])) == pytest.approx(0.1)  # 1 px unit
    embedding = rng.normal(size=(3, 64))
    assert compare.cosine(embedding, embedding) == pytest.approx(1.0)
    assert compare.cosine(-embedding, embedding) == pytest.approx(-1.0)
    assert compare.cosine(np.zeros((1, 4)), np.zeros((1, 4))) == 1.0


def test_per_step_class_scores_of_a_sequence_are_sequences():
    steps = ir.Value(name="steps", shape=ir.Shape([1, 40, 97]), type=ir.TensorType(ir.DataType.FLOAT))
    for op, expected in (("LogSoftmax", "sequences"), ("Softmax", "sequences")):
        node = ir.node(op, [steps], attributes={"axis": -1})
        node.outputs[0].shape, node.outputs[0].dtype = ir.Shape([1, 40, 97]), ir.DataType.FLOAT
        assert policy.classify(node.outputs[0]) == expected
    ppocr_rec = ir.load(CORPUS / "ppocr_rec.onnx")
    judged = policy.reference_policy(ppocr_rec, "int8").policy("fetch_name_0")
    assert judged.criteria == [Criterion("strings_decisive", 0.95)]
    assert judged.report == ["strings_equal", "top1_decisive"]
    assert policy.reference_policy(ppocr_rec, "fp16").policy("fetch_name_0").criteria == [
        Criterion("strings_equal", 0.99)]


def test_sequences_are_judged_by_their_decoded_strings():
    def steps(*rows):  # one run's steps, each a class's probability vector over 4 classes (0 is the blank)
        return np.array([np.eye(4)[c] * 0.9 + 0.025 if isinstance(c, int) else c for c in rows])

    tie = np.array([0.05, 0.46, 0.44, 0.05])  # a near-tie between classes 1 and 2
    ref = np.stack([steps(1, 1, 0, 2, 3), steps(2, tie, 0, 3, 3)])  # decodes to (1, 2, 3) and (2, 1, 3)
    # run 0: a repeat and a blank more (same string); run 1: the tie read the other way
    got = np.stack([steps(1, 0, 0, 2, 3), steps(2, tie[[0, 2, 1, 3]], 0, 3, 3)])
    assert compare.strings_equal(ref, ref) == 1.0
    assert compare.strings_equal(got, ref) == 0.5
    assert compare.strings_decisive(got, ref) == 1.0  # run 1 differs at its near-tie step only
    got[1, 3] = np.eye(4)[2] * 0.9 + 0.025  # and at a decisive step too: (2, 2, 3) against (2, 3)
    assert compare.strings_decisive(got, ref) == 0.5
    got[0, 2] = np.eye(4)[1] * 0.9 + 0.025  # a decisive blank read as class 1: (1, 1, 2, 3)
    assert compare.strings_decisive(got, ref) == 0.0
    check = compare.check_output(got, ref, OutputPolicy("sequences", [Criterion("strings_decisive", 0.95)],
                                                        ["strings_equal"]))
    assert not check.passed and check.measures["strings_equal"] == 0.0
    assert "decoded strings equal but for undecided steps 0%" in compare.describe(
        check, OutputPolicy("sequences", [Criterion("strings_decisive", 0.95)]))


def _head(channels: int, cells: int, per_anchor: int) -> ir.Value:
    """A detector head on one feature map: Conv, then NHWC and one row per anchor, [1, anchors, per_anchor]."""
    features = ir.Value(name=f"features{cells}", shape=ir.Shape([1, channels, cells, cells]),
                        type=ir.TensorType(ir.DataType.FLOAT))
    conv = ir.node("Conv", [features, ir.Value(name=f"w{cells}", shape=ir.Shape([per_anchor * 2, channels, 1, 1]))])
    nhwc = ir.node("Transpose", conv.outputs, attributes={"perm": [0, 2, 3, 1]})
    return ir.node("Reshape", [nhwc.outputs[0], ir.Value(name=f"s{cells}")]).outputs[0]


@pytest.mark.parametrize("per_anchor, expected", [(1, "scores"), (4, "boxes"), (16, "tensor")])
def test_one_logit_per_anchor_from_convolution_heads_is_scores(per_anchor, expected):
    concat = ir.node("Concat", [_head(88, 16, per_anchor), _head(96, 8, per_anchor)], attributes={"axis": 1})
    out = concat.outputs[0]
    out.shape, out.dtype = ir.Shape([1, 896, per_anchor]), ir.DataType.FLOAT
    assert policy.classify(out) == expected
    judged = policy.output_policy("scores", "int8", {}, {}, "")
    assert judged.criteria == [Criterion("cosine", 0.98)] and judged.report[:2] == ["score_err", "anchors_iou"]


def test_anchor_scores_are_measured_as_the_decoder_reads_them():
    """Sigmoid scores: a collapse (every anchor's logit far below 0) loses every positive anchor, and the
    IoU says so though 97 % of the anchors agree; an anchor near 0.5 that reads the other way is a tie."""
    ref = np.full((2, 100, 1), -8.0)
    ref[:, :3] = 3.0  # three decided positives per run
    ref[0, 3] = 0.1  # an undecided anchor (sigmoid 0.525)
    collapsed = ref - 12.0
    assert compare.anchors_iou(collapsed, ref) == 0.0
    assert np.mean((collapsed > 0) == (ref > 0)) >= 0.96
    assert compare.score_err(collapsed, ref) == pytest.approx(1 / (1 + np.exp(-3.0)) - 1 / (1 + np.exp(9.0)))
    tie = ref.copy()
    tie[0, 3] = -0.1
    assert compare.anchors_iou(tie, ref) == 1.0
    lost = ref.copy()
    lost[1, 0] = -3.0  # one of three decided positives lost in run 1
    assert compare.anchors_iou(lost, ref) == pytest.approx(2 / 3)
    check = compare.check_output(lost, ref, policy.output_policy("scores", "int8", {}, {}, ""))
    assert "IoU of decided anchors above 0.5 0.6667" in compare.describe(check, policy.output_policy(
        "scores", "int8", {}, {}, ""))


def test_a_failure_names_the_input_where_class_scores_differ_most():
    """Eight runs of two-class probabilities, one that the reference barely decides (0.62 against 0.38):
    the failure names that run and the reference's lead there."""
    ref = np.tile([[0.001, 0.999]], (8, 1))
    ref[0] = [0.38, 0.62]
    got = ref.copy()
    got[0] = [0.05, 0.95]
    check = compare.check_output(got, ref, policy.output_policy("probabilities", "int8", {}, {}, ""))
    assert not check.passed
    assert check.detail == ("max_abs_err 0.33 (limit 0.05); worst at run 1 of 8, where the reference's top class "
                            "leads by 0.24")
