"""NNCF post-training int8 for the openvino backend (`--quantizer nncf`).

NNCF quantizes the OpenVINO model itself, with OpenVINO's own placement of FakeQuantize nodes
and bias correction. Its preset (by the scheme's activation symmetry), overflow fix and model type
(transformer patterns) follow the target's scheme (or the candidate `--int8-scheme` names): where
the scheme keeps weights at 7 bits beyond the first layer, NNCF does everywhere (it has no per-input
rule). Its first-layer-only default lets the u8 x s8 sums of non-VNNI kernels saturate after any
layer whose input goes below zero (BlazeFace's scores: -27.9 dB against fp32; 7-bit everywhere:
11.3 dB), but 7 bits cost MobileNetV2 top-1 (85.7 -> 76.8 % of 56 unseen crops): the build
measures both.
Where NNCF's model fails the verification policy, the build's fallback keeps its most harmful layers
float through NNCF's ignored scope (`--nncf-float-layers`, which the manifest's replay flags carry).
With --max-accuracy-drop it runs NNCF's accuracy control, which keeps
the most harmful layers in float until the drop on the --eval data fits: accuracy against the
data's `labels`, or, without labels, top-1 agreement with the fp32 model.
"""
from __future__ import annotations

import logging

import numpy as np

from edgec.errors import InputError

logger = logging.getLogger(__name__)
# edgec's overflow_fix (quantize/qdq.py Scheme) -> NNCF's OverflowFix value
OVERFLOW_FIX = {"disable": "disable", "first_layer": "first_layer_only", "signed_inputs": "enable", "enable": "enable"}


def scheme(target, int8_scheme: str):
    """The target's scheme, or its candidate `int8_scheme`."""
    from edgec.quantize.qdq import Scheme

    base = Scheme.from_target(target.quantization)
    return base.variant(int8_scheme) if int8_scheme in base.candidates else base


def setting(scheme) -> tuple[str, str, str]:
    """What NNCF makes of `scheme` (a quantize.qdq.Scheme): its overflow fix, model type and preset (symmetric
    activations are NNCF's PERFORMANCE preset, asymmetric ones its MIXED)."""
    preset = "performance" if scheme.activation_symmetric else "mixed"
    return OVERFLOW_FIX[scheme.overflow_fix], scheme.model_type, preset


def quantize(ov_model, calibration, options, scheme, float_layers: tuple[str, ...] = ()):
    """Return the int8 OpenVINO model and a record of how NNCF made it (the manifest's backend.nncf), with
    the preset, overflow fix and model type of `scheme` (the target's or a candidate's), and the nodes
    `float_layers` (else the `nncf_float_layers` option's) left float."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    overflow, model_type, preset_name = setting(scheme)
    preset = nncf.QuantizationPreset(preset_name)
    fix = OverflowFix(overflow)
    advanced = AdvancedQuantizationParameters(overflow_fix=fix)
    family = nncf.ModelType(model_type) if model_type else None
    dataset = nncf.Dataset(list(calibration.feeds()))
    float_layers = float_layers or float_layers_option(ov_model, options)
    ignored = nncf.IgnoredScope(names=[op for layer in float_layers for op in converted(ov_model, layer)])
    record = {"nncf_version": nncf.__version__, "preset": preset.value, "overflow_fix": fix.value,
              "model_type": model_type or None, "calibration_samples": calibration.count,
              **({"float_layers": list(float_layers)} if float_layers else {})}
    if options.calibration_method not in ("minmax", "auto"):
        logger.info("note: NNCF chooses its own activation ranges; --calibration-method applies to --quantizer edgec")
    if options.bias_correction == "off":
        logger.info("note: NNCF corrects biases its own way; --bias-correction applies to --quantizer edgec")
    budget = options.max_accuracy_drop
    if budget is None:
        logger.info(f"quantizing with NNCF ({preset.value} preset, {calibration.count} samples)")
        model = nncf.quantize(ov_model, dataset, preset=preset, subset_size=calibration.count, model_type=family,
                              ignored_scope=ignored, advanced_parameters=advanced)
        return _unsigned_where_never_negative(model, record)

    eval_data = _eval_data(calibration, options)
    labels, metric = _labels(ov_model, eval_data)
    logger.info(f"quantizing with NNCF accuracy control: at most {budget} points of {metric} drop "
            f"on {eval_data.count} samples")

    def validate(compiled, items) -> float:
        predictions = np.concatenate([compiled(item)[0].argmax(-1).reshape(-1) for item in items])
        return float(np.mean(predictions == labels))

    model = nncf.quantize_with_accuracy_control(
        ov_model, dataset, nncf.Dataset(list(eval_data.feeds())), validate,
        max_drop=budget / 100.0, drop_type=nncf.DropType.ABSOLUTE, preset=preset, subset_size=calibration.count,
        model_type=family, ignored_scope=ignored, advanced_quantization_parameters=advanced)
    record["accuracy_control"] = {"metric": metric, "max_drop_points": budget, "eval_samples": eval_data.count,
                                  "eval": str(options.eval_data)}
    return _unsigned_where_never_negative(model, record)


def _unsigned_where_never_negative(model, record: dict):
    """NNCF's model with every activation range that can never go below zero starting at 0: (model, record).

    NNCF widens a range it saw constant, a dead ReLU channel's [0, 0], to [-0.0008, 0.0008] (its fix for
    zero ranges). Under its MIXED preset, where activation ranges before a depthwise convolution are per
    channel, that one channel gets zero point 128, and OpenVINO's CPU plugin runs the convolution in its
    jit kernel instead of brgconv's depthwise one: 9 of MobileNetV2's 17 (10-90 % slower each). A ReLU's or
    a non-negative Clamp's output loses nothing at low 0, so the ranges are raised there and the channel's
    zero point becomes 0; `record` counts the ranges raised (`unsigned_ranges`)."""
    import openvino as ov

    raised = 0
    for fake_quantize in model.get_ordered_ops():
        if fake_quantize.get_type_name() != "FakeQuantize" or not _never_negative(fake_quantize.input_value(0).get_node()):
            continue
        below = [(port, low.get_data()) for port in (1, 3)  # input_low, output_low
                 if (low := fake_quantize.input_value(port).get_node()).get_type_name() == "Constant"
                 and low.get_data().min() < 0]
        for port, values in below:
            fake_quantize.input(port).replace_source_output(ov.op.Constant(np.maximum(values, 0)).output(0))
        raised += bool(below)
    if raised:
        record["unsigned_ranges"] = raised
    return model, record


def _never_negative(node) -> bool:
    """Whether `node`'s output is never below zero by its kind: a ReLU, or a Clamp from zero or above."""
    kind = node.get_type_name()
    return kind == "Relu" or (kind == "Clamp" and node.get_attributes()["min"] >= 0)


def converted(ov_model, layer: str) -> list[str]:
    """The OpenVINO nodes an ONNX node `layer` became: its name, and names it prefixes where the converter
    split it (a Conv with a bias: Convolution `layer/WithoutBiases` and Add `layer`). Keeping the Add alone
    float left MobileNetV2's convolutions int8."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops()
            if op.get_friendly_name() == layer or op.get_friendly_name().startswith(layer + "/")]


def float_layers_option(ov_model, options) -> tuple[str, ...]:
    """The nodes `--nncf-float-layers` names, each one the model has (else the build is refused)."""
    given = tuple(name.strip() for name in (options.nncf_float_layers or "").split(",") if name.strip())
    unknown = [name for name in given if not converted(ov_model, name)]
    if unknown:
        raise InputError(f"--nncf-float-layers: the model has no node {unknown[0]!r}; name nodes of the graph "
                         "edgec imported, as an int8 build's manifest lists them (quantization.layers, "
                         "quantization.policy_fallback)")
    return given


def _eval_data(calibration, options):
    from edgec.quantize.data import load_eval

    if not options.eval_data:
        raise InputError("--max-accuracy-drop needs --eval PATH: an .npz of inputs (and optional 'labels')")
    return load_eval(options.eval_data, calibration.specs)


def _labels(ov_model, eval_data) -> tuple[np.ndarray, str]:
    """The labels to score against: the data's own, or the fp32 model's top-1 classes."""
    if eval_data.labels is not None:
        return np.asarray(eval_data.labels).reshape(-1), "accuracy"
    import openvino as ov

    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    top1 = [compiled(feed)[0].argmax(-1).reshape(-1) for feed in eval_data.feeds()]
    return np.concatenate(top1), "top-1 agreement with fp32"
