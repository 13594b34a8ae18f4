"""int8 QDQ graphs that follow a target's scheme, made with onnxruntime's quantization tools.

Calibration runs once: its tensor ranges are kept in a cache file, so the fallback loop
can re-quantize with some layers excluded without calibrating again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx_ir as ir

from edgec import ir as eir
from edgec.quantize.data import CalibrationData

METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


@dataclass(frozen=True)
class Scheme:
    """A target's int8 scheme, read from the `[quantization]` table of its TOML file."""

    activations: str = "int8"
    activation_symmetric: bool = False
    weights: str = "int8"
    weight_symmetric: bool = True
    weight_bits: int = 8  # 7 keeps u8 x s8 products of pairs within int16 (kernels that saturate there)
    per_channel: bool = True
    bias: str = "int32"
    ops: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_target(cls, table: dict) -> "Scheme":
        known = {k: v for k, v in table.items() if k in cls.__dataclass_fields__ and k != "extra"}
        known["ops"] = tuple(known.get("ops", ()))
        if known.get("weight_bits", 8) not in (7, 8):
            raise ValueError(f"weight_bits must be 7 or 8, not {known['weight_bits']}")
        return cls(**known, extra={k: v for k, v in table.items() if k not in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return {"activations": self.activations, "activation_symmetric": self.activation_symmetric,
                "weights": self.weights, "weight_symmetric": self.weight_symmetric,
                "weight_bits": self.weight_bits, "per_channel": self.per_channel, "bias": self.bias, "ops": list(self.ops)}


class _Reader:
    """onnxruntime CalibrationDataReader over the calibration runs."""

    def __init__(self, data: CalibrationData):
        self.rows = list(data.feeds())
        self.index = 0

    def get_next(self):
        if self.index >= len(self.rows):
            return None
        row = self.rows[self.index]
        self.index += 1
        return row

    def __len__(self):
        return len(self.rows)

    def set_range(self, start_index, end_index):  # used by strided calibration
        self.rows = self.rows[start_index:end_index]
        self.index = 0


class Quantizer:
    """Quantize one float model for one scheme; `run(exclude)` may be called many times."""

    def __init__(self, model: ir.Model, scheme: Scheme, data: CalibrationData, method: str, workdir: Path):
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method}")
        self.scheme, self.data, self.method, self.workdir = scheme, data, method, workdir
        self.float_path = eir.save(model, workdir / "float.onnx")
        self.cache = workdir / "calibration.json"

    def run(self, exclude: tuple[str, ...] = ()) -> ir.Model:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
        out = self.workdir / "qdq.onnx"
        quantize_static(
            str(self.float_path),
            str(out),
            _Reader(self.data),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(self.scheme.ops) or None,
            per_channel=self.scheme.per_channel,
            reduce_range=self.scheme.weight_bits == 7,
            activation_type=types[self.scheme.activations],
            weight_type=types[self.scheme.weights],
            nodes_to_exclude=list(exclude),
            calibrate_method=getattr(CalibrationMethod, METHODS[self.method]),
            calibration_cache_path=str(self.cache),
            extra_options={
                "ActivationSymmetric": self.scheme.activation_symmetric,
                "WeightSymmetric": self.scheme.weight_symmetric,
                **self.scheme.extra,
            },
        )
        return ir.load(out)
