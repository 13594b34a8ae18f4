"""The manifest's types: JSON in and out, and one-line refusals of what they do not describe."""
from __future__ import annotations

import json

import pytest

from edgec.package.harness.manifest import (
    SCHEMA_VERSION, BuildHost, BuildRecord, ComparisonPolicy, Criterion, FileEntry, LayerError, Manifest,
    ManifestError, ModelFiles, OnnxRuntimeConfig, OutputCheck, OutputPolicy, PassesRecord, Quantization,
    QuantizationRecord, Runtime, RuntimeCheck, Samples, SchemeChoice, Source, Target, TensorSpec, TFLiteConfig,
    Verification, VerificationResult, dumps, from_json, loads, to_json)


def manifest() -> Manifest:
    spec = TensorSpec("x", [1, 8, 8, 3], "int8", "NHWC", [0, 2, 3, 1], Quantization(0.02, -3), 0)
    out = TensorSpec("y", ["batch", 10], "float32", batch_axis=0)
    policy = ComparisonPolicy(OutputPolicy("tensor", [Criterion("rel_err", 1e-4)]),
                              {"y": OutputPolicy("logits", [Criterion("top1_agreement", 0.99)])})
    result = VerificationResult("local", True, 8, {"reference": {"y": OutputCheck(True, {"rel_err": 0.0})}},
                                {"xnnpack": RuntimeCheck(True, "all delegated", {"operators": 7})})
    return Manifest(
        SCHEMA_VERSION, "0.1.0", "2026-01-01T00:00:00+00:00", BuildHost("x86_64", "3.11.2", "1.1.0"),
        Source("m", "m.onnx", "ab" * 32, 100, 17, [TensorSpec("x", [1, 3, 8, 8], "float32")], [out]),
        Target("tflite-arm", "tflite", precisions=["fp32", "int8"], options={"io_layout": "nhwc"}),
        TFLiteConfig("tflite", {"CONV_2D": 3}, "nhwc", "int8"),
        Runtime("ai-edge-litert", "2.3.0", "ai-edge-litert==2.3.0", "rt_tflite:LiteRTSession"), "int8",
        QuantizationRecord("int8", "edgec", layers=[LayerError("conv", "Conv", "t", 40.0, 0.999, 1.5)]),
        ModelFiles("model.tflite", {"model.tflite": FileEntry("cd" * 32, 42)}, 42), [spec], [out], Samples(8),
        Verification(policy, policy, result),
        BuildRecord({"io_layout": "nhwc"}, [], None, PassesRecord(12, 9, {"Conv": 3}), []))


def test_round_trip_is_exact():
    m = manifest()
    assert loads(dumps(m)) == m
    assert dumps(loads(dumps(m))) == dumps(m)
    assert isinstance(loads(dumps(m)).backend, TFLiteConfig)  # the backend's own config class, by name


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["inputs"][0].pop("dtype"), "edgec.json.inputs[0]: missing field 'dtype'"),
    (lambda d: d["outputs"][0].update(colour="red"), "edgec.json.outputs[0]: unknown field 'colour'"),
    (lambda d: d["model"].update(bytes="42"), "edgec.json.model.bytes: expected an integer"),
    (lambda d: d["backend"].update(name="coreml"), "unknown backend 'coreml'"),
    (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), f"schema version {SCHEMA_VERSION + 1}, newer than"),
    (lambda d: d.update(schema_version=1), "from an older edgec: rebuild the artifact"),
    (lambda d: d.pop("schema_version"), "has no schema_version"),
])
def test_refusals_are_one_line_naming_the_place(edit, words):
    data = json.loads(dumps(manifest()))
    edit(data)
    with pytest.raises(ManifestError) as err:
        loads(json.dumps(data))
    assert words in str(err.value) and "\n" not in str(err.value)
    assert err.value.code == 2


def test_optional_fields_may_be_left_out_and_are_written_back():
    spec = from_json(TensorSpec, {"name": "x", "shape": None, "dtype": "bool"})
    assert spec.layout is None and spec.batch_axis is None and spec.rank is None
    assert to_json(spec)["quantization"] is None


def test_a_policy_judges_each_output_by_its_own_criteria():
    policy = manifest().verification.reference
    assert policy.policy("y").kind == "logits" and policy.policy("other").criteria[0].measure == "rel_err"


def test_not_json_is_refused():
    with pytest.raises(ManifestError, match="is not valid JSON"):
        loads("{")


def test_chosen_options_gather_every_int8_choice_for_a_replay():
    """--precision auto's build.toml replays an int8 winner's measured choices: its scheme was chosen partly by
    timing, and measuring it again can choose another (a rebuild of other bytes)."""
    record = QuantizationRecord(
        "int8", "edgec",
        scheme_choice=SchemeChoice("u8s8-7bit-first", "faster", "--int8-scheme u8s8-7bit-first", [],
                                   {"int8_scheme": "u8s8-7bit-first"}),
        calibration_choice=SchemeChoice("percentile", "faithful", "--calibration-method percentile", [],
                                        {"calibration_method": "percentile"}),
        bias_choice=SchemeChoice("on", "faithful", "--bias-correction on", [], {"bias_correction": "on"}))
    assert record.chosen_options() == {"int8_scheme": "u8s8-7bit-first", "calibration_method": "percentile",
                                       "bias_correction": "on"}
    assert QuantizationRecord("fp16", "edgec").chosen_options() == {}
