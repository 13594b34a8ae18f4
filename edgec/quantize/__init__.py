"""Quantization for every target: one engine, each target's own int8 scheme, and the proof.

`quantize_for_target` is the single entry point the build calls. int8 yields a QDQ graph in
the common IR that follows the target's `[quantization]` scheme; every backend lowers that.
fp16 passes the float model through: each backend stores or runs fp16 its own way.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import onnx_ir as ir

from edgec import system
from edgec.errors import InputError, UnsupportedError
from edgec.package.harness.manifest import QuantizationRecord
from edgec.quantize.data import CalibrationData, load_eval
from edgec.quantize.qdq import Quantizer, Scheme

PER_CHANNEL_OPSET = 13  # DequantizeLinear's `axis` (per-channel scales) exists from opset 13

logger = logging.getLogger(__name__)

MISSING_CALIBRATION = (
    "int8 needs calibration data: pass --calibration FILE.npz (arrays keyed by input name), a .npy, "
    "a folder of images with --preprocess, or --calibration random to calibrate on noise"
)


def check_options(precision: str, calibration, options) -> None:
    """Refuse inconsistent quantization options before any work is spent."""
    if precision == "int8" and calibration is None:
        raise InputError(MISSING_CALIBRATION)
    if getattr(options, "max_accuracy_drop", None) is not None:
        if precision != "int8":
            raise InputError("--max-accuracy-drop applies to --precision int8 only")
        if not options.eval_data:
            raise InputError("--max-accuracy-drop needs --eval PATH: an .npz of inputs (and optional 'labels')")


def _scheme_for_opset(model: ir.Model, scheme: Scheme) -> Scheme:
    """Per-tensor weights for a model still below the opset per-channel scales need.

    The build converts older models before the passes (passes.UpgradeOpsetPass); a model that onnx's
    converter could not convert arrives here unchanged.
    """
    from edgec.ir import opset

    if not scheme.per_channel or opset.default_opset(model) >= PER_CHANNEL_OPSET:
        return scheme
    logger.warning(f"the opset-{opset.default_opset(model)} model could not be converted to opset "
                   f"{PER_CHANNEL_OPSET}, which per-channel int8 needs: its weights are quantized per tensor")
    return dataclasses.replace(scheme, per_channel=False)


def quantize_for_target(model: ir.Model, target, precision: str, calibration: CalibrationData | None, backend,
                        options, judge=None) -> tuple[ir.Model, QuantizationRecord | None]:
    """Return the model the backend lowers and the manifest's `quantization` record.

    `judge` (a fallback.PolicyJudge) checks the int8 model against the verification policy; where it
    fails, the most harmful layers stay float until it passes (or --strict-precision refuses).
    """
    if precision == "fp16":
        return model, QuantizationRecord("fp16", "the backend's own (float16 weights)", weights="float16")
    if precision != "int8":
        return model, None
    check_options(precision, calibration, options)
    record = QuantizationRecord("int8", f"{backend.name} (see backend)", calibration=calibration.describe())
    if calibration.random:
        logger.warning("calibrating on random noise (--calibration random): expect poor int8 accuracy")
        record.warning = "calibrated on random noise"
    if backend.quantizes_itself(options):
        return model, record

    scheme = Scheme.from_target(target.quantization)
    scheme = _scheme_for_opset(model, scheme)
    method = options.calibration_method
    record.scheme, record.method, record.opset = scheme.to_dict(), method, model.opset_imports.get("")
    record.engine = "edgec (onnxruntime quantize_static, QDQ)"
    from edgec.quantize import fallback, ranges, report

    with system.scratch("quant") as tmp:
        logger.info(f"calibrating int8 ranges ({method}, {calibration.count} samples)")
        quantizer = Quantizer(model, scheme, calibration, method, Path(tmp))
        qdq = quantizer.run()
        record.mixed_range_heads = ranges.mixed_range_heads(model, ranges.calibrated_spans(quantizer.cache))
        quantizer.always_float = tuple(name for head in record.mixed_range_heads for name in head.float_nodes)
        for head in record.mixed_range_heads:
            logger.info(f"{head.node} concatenates ranges {head.ratio:g}x apart: " + (
                f"kept it and the {len(head.float_nodes) - 1} nodes after it float, each input on its own scale"
                if head.float_nodes else "left int8, since multiply-accumulate layers follow it"))
        if quantizer.always_float:
            qdq = quantizer.run()
        record.layers = report.layer_errors(model, qdq, calibration)
        macs = fallback.MacShare(model, next(calibration.feeds()))
        record.int8_mac_share = round(macs.int8_share(quantizer.always_float), 4)
        budget = options.max_accuracy_drop
        # with an accuracy budget, the accuracy fallback below judges instead
        failed = judge.failures(qdq) if judge is not None and budget is None else {}
        if failed and options.strict_precision:
            worst = ", ".join(f"{layer.name} ({layer.harm_db:.1f} dB)" for layer in record.layers[:5])
            raise UnsupportedError(
                f"int8 does not verify ({'; '.join(f'{k}: {v}' for k, v in failed.items())}) and --strict-precision "
                f"keeps every layer int8; the most harmful layers: {worst}. Drop --strict-precision to keep them "
                "float, or build fp16")
        if failed:
            qdq, record.policy_fallback = fallback.to_verify(quantizer, record.layers, judge, macs, qdq, failed)
            record.int8_mac_share = round(record.policy_fallback.int8_mac_share, 4)
            _mark_float(record, record.policy_fallback.float_layers)
        if budget is not None:
            judge = fallback.AccuracyJudge(model, load_eval(options.eval_data, calibration.specs))
            qdq, record.fallback = fallback.run(quantizer, record.layers, judge, budget, qdq)
            _mark_float(record, record.fallback["float_layers"])
            record.int8_mac_share = round(macs.int8_share((*quantizer.always_float, *record.fallback["float_layers"])), 4)
    return qdq, record


def _mark_float(record: QuantizationRecord, names) -> None:
    kept = set(names)
    for layer in record.layers:
        layer.precision = "float" if layer.name in kept else "int8"
