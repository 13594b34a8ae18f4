"""NNCF post-training int8 for the openvino backend (`--quantizer nncf`).

NNCF quantizes the OpenVINO model itself, with OpenVINO's own placement of FakeQuantize nodes
and bias correction. With --max-accuracy-drop it runs NNCF's accuracy control, which keeps
the most harmful layers in float until the drop on the --eval data fits: accuracy against the
data's `labels`, or, without labels, top-1 agreement with the fp32 model.
"""
from __future__ import annotations

import logging

import numpy as np

from edgec.errors import InputError

logger = logging.getLogger(__name__)


def quantize(ov_model, ctx):
    """Return the int8 OpenVINO model and a record of how NNCF made it (the manifest's backend.nncf)."""
    import nncf

    calibration = ctx.calibration
    preset = (nncf.QuantizationPreset.PERFORMANCE if ctx.target.quantization.get("activation_symmetric")
              else nncf.QuantizationPreset.MIXED)
    dataset = nncf.Dataset(list(calibration.feeds()))
    record = {"nncf_version": nncf.__version__, "preset": preset.value, "calibration_samples": calibration.count}
    if ctx.options.calibration_method != "minmax":
        logger.info("note: NNCF chooses its own activation ranges; --calibration-method applies to --quantizer edgec")
    budget = ctx.options.max_accuracy_drop
    if budget is None:
        logger.info(f"quantizing with NNCF ({preset.value} preset, {calibration.count} samples)")
        model = nncf.quantize(ov_model, dataset, preset=preset, subset_size=calibration.count)
        return model, record

    eval_data = _eval_data(ctx)
    labels, metric = _labels(ov_model, eval_data)
    logger.info(f"quantizing with NNCF accuracy control: at most {budget} points of {metric} drop "
            f"on {eval_data.count} samples")

    def validate(compiled, items) -> float:
        predictions = np.concatenate([compiled(item)[0].argmax(-1).reshape(-1) for item in items])
        return float(np.mean(predictions == labels))

    model = nncf.quantize_with_accuracy_control(
        ov_model, dataset, nncf.Dataset(list(eval_data.feeds())), validate,
        max_drop=budget / 100.0, drop_type=nncf.DropType.ABSOLUTE, preset=preset, subset_size=calibration.count)
    record["accuracy_control"] = {"metric": metric, "max_drop_points": budget, "eval_samples": eval_data.count,
                                  "eval": str(ctx.options.eval_data)}
    return model, record


def _eval_data(ctx):
    from edgec.quantize.data import load_eval

    if not ctx.options.eval_data:
        raise InputError("--max-accuracy-drop needs --eval PATH: an .npz of inputs (and optional 'labels')")
    return load_eval(ctx.options.eval_data, ctx.calibration.specs)


def _labels(ov_model, eval_data) -> tuple[np.ndarray, str]:
    """The labels to score against: the data's own, or the fp32 model's top-1 classes."""
    if eval_data.labels is not None:
        return np.asarray(eval_data.labels).reshape(-1), "accuracy"
    import openvino as ov

    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    top1 = [compiled(feed)[0].argmax(-1).reshape(-1) for feed in eval_data.feeds()]
    return np.concatenate(top1), "top-1 agreement with fp32"
