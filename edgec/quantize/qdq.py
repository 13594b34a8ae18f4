"""int8 QDQ graphs that follow a target's scheme, made with onnxruntime's quantization tools.

Calibration runs once (quantize/calibrate.py): each method's tensor ranges are kept in a cache
file, so the method choice, the scheme candidates and the fallback loop re-quantize without
calibrating again. Nor do they quantize the weights again: those runs differ in activation ranges,
biases and excluded nodes, so onnxruntime's weight functions answer repeated questions from a cache
(`_WeightCache`). Where they do work, a per-channel weight gets its parameters and int8 values for all
channels at once: onnxruntime's own loops go channel by channel in Python (0.8 s of MobileNetV2's first
quantize_static).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from edgec import ir as eir
from edgec.ir import runtime
from edgec.ir.stats import MAC_OPS
from edgec.quantize.data import CalibrationData

METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy", "mean-minmax": "MinMax"}
QDQ_FILE = "edgec.qdq_file"  # a Quantizer's graph's meta: the file it was read from, one per distinct graph
OVERFLOW_FIXES = ("disable", "first_layer", "signed_inputs", "first_layer_and_signed_inputs", "enable")
ACTIVATION_RANGES = ("calibrated", "runtime")


@dataclass(frozen=True)
class Scheme:
    """A target's int8 scheme, read from the `[quantization]` table of its TOML file."""

    activations: str = "int8"
    activation_symmetric: bool = False
    weights: str = "int8"
    weight_symmetric: bool = True
    # where activation scales come from: "calibrated" ranges fixed at build time (QDQ), or each tensor's
    # own range at run time ("runtime": DynamicQuantizeLinear before integer MatMuls, onnxruntime's
    # dynamic quantization). Transformers need the latter: their per-tensor activation outliers leave a
    # fixed scale a few levels for the rest (corpus MiniLM embeddings: cosine 0.85-0.89 static, 0.99 dynamic)
    activation_ranges: str = "calibrated"
    # 7-bit weights keep pairs of u8 x s8 products within int16, where kernels saturate (AVX2 without
    # VNNI): on the first MAC layers (those that see the model's inputs), on every MAC layer whose input
    # goes below zero (its u8 zero point, and so every code, sits far above 0), on both, on all, or none.
    overflow_fix: str = "disable"
    per_channel: bool = True
    bias: str = "int32"
    # data-movement operators between int8 tensors run on the integers (quantize/islands.py): for
    # runtimes with integer kernels for them that do not do it themselves
    int8_data_movement: bool = False
    # the runtime fuses a quantization into the layer that computed its input, with the elementwise
    # operations between them (OpenVINO): pairs move above data-movement operators, and activation
    # functions written as products stay float (quantize/placement.py)
    quantize_at_producer: bool = False
    ops: tuple[str, ...] = ()
    # of `ops`, those quantized only where every input is computed: a residual Add, not a bias Add
    computed_inputs_only: tuple[str, ...] = ()
    # the model family whose quantization patterns a backend's own quantizer applies (NNCF's model_type):
    # "transformer" quantizes the inputs of the MatMuls and leaves attention masks, Softmax and the
    # normalizations float. edgec's QDQ quantizer has no such patterns: only the backend builds such a candidate
    model_type: str = ""
    # named variants of this scheme (`[quantization.candidates]`: NAME = {key = value}) the build measures
    # and chooses from (edgec/quantize/choose.py); empty: this scheme is the only one
    candidates: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_target(cls, table: dict) -> "Scheme":
        known = {k: v for k, v in table.items() if k in cls.__dataclass_fields__ and k != "extra"}
        known["ops"] = tuple(known.get("ops", ()))
        known["computed_inputs_only"] = tuple(known.get("computed_inputs_only", ()))
        if known.get("activation_ranges", "calibrated") not in ACTIVATION_RANGES:
            raise ValueError(f"activation_ranges must be one of {', '.join(ACTIVATION_RANGES)}")
        if known.get("overflow_fix", "disable") not in OVERFLOW_FIXES:
            raise ValueError(f"overflow_fix must be one of {', '.join(OVERFLOW_FIXES)}, not {known['overflow_fix']}")
        for name, overrides in known.get("candidates", {}).items():
            unknown = sorted(set(overrides) - set(cls.__dataclass_fields__) - {"candidates", "extra"})
            if unknown:
                raise ValueError(f"[quantization.candidates] {name}: {unknown[0]} is not a scheme key")
        return cls(**known, extra={k: v for k, v in table.items() if k not in cls.__dataclass_fields__})

    def variant(self, name: str) -> "Scheme":
        """The candidate `name`: this scheme with its overrides, itself without candidates."""
        overrides = dict(self.candidates[name])
        for key in ("ops", "computed_inputs_only"):
            if key in overrides:
                overrides[key] = tuple(overrides[key])
        return dataclasses.replace(self, **overrides, candidates={})

    def leaves_float(self, mac_layers: dict[str, str], computed_weights: tuple[str, ...] = ()) -> list[str]:
        """Of `mac_layers` (name -> operator), those whose operator this scheme does not quantize, and with
        ranges taken at run time those of `computed_weights` too (dynamic quantization takes constant
        weights only: attention's two activations stay float)."""
        skipped = computed_weights if self.activation_ranges == "runtime" else ()
        int8_ops = self.int8_ops()
        return [name for name, op in mac_layers.items() if op not in int8_ops or name in skipped]

    def int8_ops(self) -> frozenset[str]:
        """The operators this scheme runs in int8: its `ops`, or all that onnxruntime's quantizer takes
        (static QDQ leaves an LSTM float; dynamic quantization takes it)."""
        if self.ops:
            return frozenset(self.ops)
        from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry

        return frozenset(IntegerOpsRegistry if self.activation_ranges == "runtime" else QDQRegistry)

    def to_dict(self) -> dict:
        return {"activations": self.activations, "activation_symmetric": self.activation_symmetric,
                "activation_ranges": self.activation_ranges,
                "weights": self.weights, "weight_symmetric": self.weight_symmetric,
                "overflow_fix": self.overflow_fix, "per_channel": self.per_channel, "bias": self.bias,
                "int8_data_movement": self.int8_data_movement, "quantize_at_producer": self.quantize_at_producer,
                "ops": list(self.ops), "computed_inputs_only": list(self.computed_inputs_only)}


class Reader:
    """onnxruntime CalibrationDataReader over the calibration runs."""

    def __init__(self, runs: list[dict]):
        self.rows = list(runs)
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
    """Quantize one float model; `run(exclude)` may be called many times, and `scheme` changed between
    runs (the candidates of a target's scheme share one calibration)."""

    def __init__(self, model: ir.Model, scheme: Scheme, data: CalibrationData, method: str, workdir: Path):
        """`method` "auto" leaves the choice to the caller, who measures (quantize/choose.py) and calls `use`."""
        from edgec.quantize import bias, placement
        from edgec.quantize.calibrate import Ranges, answers

        self.scheme, self.data, self.workdir = scheme, data, workdir
        self.kept_float = _with_constant_input(model, scheme.computed_inputs_only)
        if scheme.quantize_at_producer:
            self.kept_float += placement.activation_products(model)
        self.first_weights = _first_layer_weights(model)
        self.mac_layers = {node.name: node.op_type for node in model.graph if node.op_type in MAC_OPS}
        self.computed_weights = tuple(node.name for node in model.graph if node.op_type in MAC_OPS
                                      and node.inputs[1].const_value is None)
        self.weights_by_input = _weights_by_input(model)
        self.float_path = eir.save(model, workdir / "float.onnx")
        freed = runtime.free_batch(model)
        batched = None if freed is None else workdir / "float-free-batch.onnx"
        if freed is not None:
            batched.write_bytes(freed.SerializeToString())
        self.ranges = Ranges(self.float_path, scheme.ops, list(data.feeds()), workdir,
                             frozenset(bias.correctable(model).values()), runtime.input_free(model),
                             tuple(v.name for v in model.graph.outputs), batched, answers(model))
        self.method, self.cache = "", Path()
        if method != "auto":
            self.use(method)
        self.always_float: tuple[str, ...] = ()  # nodes no run quantizes (mixed-range heads)
        # (scheme, 7-bit weights) -> the layers measured, and each one's mean output shift (`_shifts_of`)
        self._shifts: dict[tuple, tuple[set[str], dict[str, np.ndarray]]] = {}
        self._float_biases = bias.float_biases(model)
        self._weights = _WeightCache()
        self._graphs: dict[tuple, Path] = {}  # see _quantize: its QDQ file
        self.bias_corrected = 0  # layers the last run corrected
        self.correct_bias = True

    @property
    def float_layers(self) -> tuple[str, ...]:
        """Nodes no run quantizes: the always-float ones, and the MAC layers whose operator the scheme
        leaves float (the int8 MAC share counts both)."""
        return (*self.always_float, *self.scheme.leaves_float(self.mac_layers, self.computed_weights))

    def use(self, method: str, held_back_too: bool = True) -> None:
        """Quantize with `method`'s ranges, from every calibration run or without the held-back ones."""
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method}")
        self.method, self.cache = method, self.ranges.write(method, held_back_too)

    def run(self, exclude: tuple[str, ...] = ()) -> ir.Model:
        """The QDQ graph, `exclude` and the always-float nodes left float; with `correct_bias`, every int8
        layer's bias takes back its weights' mean rounding shift (quantize/bias.py), edited into the graph
        onnxruntime quantized: the bias choice's "on" and "off" are one quantization. The shifts depend on
        the scheme and on which weights get 7 bits only, so each such pair measures them once, from the
        weights of the first graph that has them."""
        from edgec.quantize import bias

        seven_bit = self._seven_bit_weights()
        model = self._quantize(exclude, seven_bit)
        self.bias_corrected = 0
        if self.correct_bias and self.scheme.activation_ranges != "runtime":  # else no fixed bias scale to correct
            floating = {*exclude, *self.always_float, *self.kept_float}
            shifts = self._shifts_of(model, (repr(self.scheme), tuple(seven_bit)), floating)
            self.bias_corrected = bias.correct(model, self._float_biases, shifts)
            if self.bias_corrected:  # else the same graph, which a judge need not run again
                model.meta[QDQ_FILE] += "+bias-corrected"
        if self.scheme.quantize_at_producer and self.scheme.activation_ranges != "runtime":
            from edgec.quantize import placement

            placement.hoist_over_data_movement(model)
        return model

    def _shifts_of(self, model: ir.Model, key: tuple, floating: set[str]) -> dict[str, np.ndarray]:
        """The mean output shifts of the int8 layers of `model`, a QDQ graph under the weight settings `key`;
        layers none of the key's graphs had in int8 before are measured on this one's weights."""
        from edgec.quantize import bias

        measured, shifts = self._shifts.setdefault(key, (set(), {}))
        wanted = set(self._float_biases) - floating
        if not wanted <= measured:
            weights = {name: w for name, w in bias.dequantized_weights(model).items() if name not in measured}
            shifts.update(bias.output_shifts(ir.load(self.float_path), weights, self.ranges.input_means))
            measured.update(wanted, weights)
        return {name: shifts[name] for name in wanted if name in shifts}

    def _seven_bit_weights(self) -> list[str]:
        """The weights that get 7 bits under `overflow_fix` ("enable" is onnxruntime's reduce_range)."""
        if self.scheme.overflow_fix == "first_layer":
            return self.first_weights
        if self.scheme.overflow_fix in ("signed_inputs", "first_layer_and_signed_inputs"):
            from edgec.quantize.ranges import calibrated_spans

            spans = calibrated_spans(self.cache)
            first = self.first_weights if self.scheme.overflow_fix == "first_layer_and_signed_inputs" else []
            return [weight for data, weight in self.weights_by_input
                    if weight in first or (data in spans and spans[data].low < 0)]
        return []

    def _quantize(self, exclude: tuple[str, ...], seven_bit: list[str]) -> ir.Model:
        """onnxruntime's QDQ graph of the float model: made once per exclusion, scheme and ranges."""
        key = (tuple(exclude), tuple(seven_bit), repr(self.scheme), self.cache, self.always_float,
               tuple(self.kept_float))
        if key not in self._graphs:
            path = self.workdir / f"qdq-{len(self._graphs)}.onnx"
            self._write_qdq(self.float_path, path, exclude, seven_bit)
            self._graphs[key] = path
        model = ir.load(self._graphs[key])
        model.meta[QDQ_FILE] = str(self._graphs[key])
        return model

    def _write_qdq(self, float_path: Path, out: Path, exclude: tuple[str, ...], seven_bit: list[str]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

        types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
        if self.scheme.activation_ranges == "runtime":
            quantize_dynamic(str(float_path), str(out), op_types_to_quantize=list(self.scheme.ops) or None,
                             per_channel=self.scheme.per_channel, weight_type=types[self.scheme.weights],
                             nodes_to_exclude=[*self.always_float, *self.kept_float, *exclude])
            return
        with self._weights.answering(), _int32_bias_checked_at_once():
            quantize_static(
                str(float_path),
                str(out),
                None,  # the ranges come from the cache
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(self.scheme.ops) or None,
                per_channel=self.scheme.per_channel,
                reduce_range=self.scheme.overflow_fix == "enable",
                activation_type=types[self.scheme.activations],
                weight_type=types[self.scheme.weights],
                nodes_to_exclude=[*self.always_float, *self.kept_float, *exclude],
                calibrate_method=getattr(CalibrationMethod, METHODS[self.method]),
                calibration_cache_path=str(self.cache),
                extra_options={
                    "ActivationSymmetric": self.scheme.activation_symmetric and not self._unsigned_where_positive,
                    "WeightSymmetric": self.scheme.weight_symmetric,
                    "TensorQuantOverrides": {**self._signed_symmetric(),
                                             **{w: [{"axis": 0, "reduce_range": True}] for w in seven_bit}},
                    **self.scheme.extra,
                },
            )

    @property
    def _unsigned_where_positive(self) -> bool:
        """Symmetric uint8 activations: a tensor that never goes below zero (a ReLU's output) takes [0, max] with
        zero point 0, and only one that does a range symmetric about 0, as NNCF's PERFORMANCE preset places
        them. Symmetric about 0 everywhere left half the codes of every ReLU output unused and gave the next
        layer signed inputs: the corpus FER CNN's 1x1 convolutions ran 101 against NNCF's 86 us."""
        return self.scheme.activation_symmetric and self.scheme.activations == "uint8"

    def _signed_symmetric(self) -> dict[str, list[dict]]:
        """The overrides that make each calibrated tensor below zero symmetric (_unsigned_where_positive)."""
        if not self._unsigned_where_positive:
            return {}
        from edgec.quantize.ranges import calibrated_spans

        return {name: [{"symmetric": True}] for name, span in calibrated_spans(self.cache).items() if span.low < 0}


class _WeightCache:
    """Answers onnxruntime's weight-quantization functions (pure: the same arguments give the same
    result) from the calls already made, while `answering`. A weight's channels are the same in every
    run of one Quantizer, so only its first run computes them; and the quantizer's parameters of all
    its weights (`_calc_initializer_quant_params`, one call per channel) are answered whole where the
    weights and the settings they are computed with are the same: the runs of the method and bias
    choices differ in activation ranges and biases only."""

    FUNCTIONS = ("compute_data_quant_params", "quantize_onnx_initializer")
    PARAMETERS = "_calc_initializer_quant_params"

    def __init__(self):
        self.answers: dict[tuple, object] = {}

    @contextlib.contextmanager
    def answering(self):
        from onnxruntime.quantization import qdq_quantizer

        originals = {name: getattr(qdq_quantizer, name) for name in self.FUNCTIONS}
        for name, function in originals.items():
            at_once = _channels_quantized_at_once(function) if name == "quantize_onnx_initializer" else function
            setattr(qdq_quantizer, name, self._cached(at_once))
        parameters = getattr(qdq_quantizer.QDQQuantizer, self.PARAMETERS)
        setattr(qdq_quantizer.QDQQuantizer, self.PARAMETERS, self._cached_parameters(parameters))
        try:
            yield
        finally:
            for name, function in originals.items():
                setattr(qdq_quantizer, name, function)
            setattr(qdq_quantizer.QDQQuantizer, self.PARAMETERS, parameters)

    def _cached(self, function):
        def cached(*args, **kwargs):
            key = (function, *map(_content, args), *((k, _content(v)) for k, v in sorted(kwargs.items())))
            if key not in self.answers:
                self.answers[key] = function(*args, **kwargs)
            return _copy(self.answers[key])  # the caller may change what it gets
        return cached

    def _cached_parameters(self, method):
        def cached(quantizer) -> dict:
            key = (method, *_weight_settings(quantizer))
            if key not in self.answers:
                self.answers[key] = _initializer_params(quantizer, method)
            # the int32 bias check rescales some weights of its copy in place
            return {name: copy.deepcopy(params) for name, params in self.answers[key].items()}
        return cached


def _initializer_params(quantizer, compute) -> dict:
    """onnxruntime's quantization parameters of every initializer the quantizer marked (`compute`: its own
    QDQQuantizer._calc_initializer_quant_params), those of per-channel symmetric weights computed for all
    channels at once: its loop calls a function per channel (MobileNetV2: 18,056 calls, 0.44 s; at once 0.017 s).
    The same operations in the same dtypes give the same bytes; every other initializer (per-tensor, blocked,
    or with overrides beyond the axis and 7-bit weights) is onnxruntime's own."""
    from onnxruntime.quantization.base_quantizer import QuantizationParams

    at_once = {}
    for name, (data, axis, reduce_range) in _plain_channel_weights(quantizer).items():
        zero_point, scale = _symmetric_channel_params(data, axis, quantizer.weight_qType, reduce_range)
        at_once[name] = QuantizationParams(zero_point=zero_point, scale=scale, quant_type=quantizer.weight_qType,
                                           axis=axis)
    marked = quantizer.tensors_to_quantize
    quantizer.tensors_to_quantize = {name: info for name, info in marked.items() if name not in at_once}
    try:
        params = {**compute(quantizer), **at_once}
    finally:
        quantizer.tensors_to_quantize = marked
    return {name: params[name] for name in marked if name in params}


def _channels_quantized_at_once(quantize):
    """onnxruntime's quantize_onnx_initializer (`quantize`), with a per-channel int8 or uint8 weight quantized for
    all channels at once: its loop quantizes one channel at a time (MobileNetV2: 0.4 s of the first
    quantization). The same operations in the same dtypes (divide in float32, round, add the zero point,
    clip) give the same bytes; every other weight is onnxruntime's own."""
    from onnxruntime.quantization import quant_utils

    def at_once(weight, quant_type, zero_point, scale, axis=None, quant_weight_name=None, block_size=0):
        data = quant_utils.tensor_proto_to_array(weight)
        if (axis is None or block_size or quant_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
                or data.dtype != np.float32 or scale.dtype != np.float32 or scale.ndim != 1
                or np.shape(zero_point) != scale.shape):
            return quantize(weight, quant_type, zero_point, scale, axis, quant_weight_name, block_size)
        qmin, qmax = quant_utils.get_qmin_qmax_for_qType(quant_type)
        along = [1] * data.ndim
        along[axis] = -1
        quantized = np.asarray((data / scale.reshape(along)).round() + zero_point.reshape(along))
        np.clip(quantized, qmin, qmax, out=quantized)
        name = quant_weight_name or f"{weight.name}{quant_utils.TENSOR_NAME_QUANT_SUFFIX}"
        dtype = onnx.helper.tensor_dtype_to_np_dtype(quant_type)
        return onnx.numpy_helper.from_array(quantized.astype(dtype).reshape(weight.dims), name)

    return at_once


def _plain_channel_weights(quantizer) -> dict[str, tuple[np.ndarray, int, bool]]:
    """The marked float32 weights onnxruntime quantizes per channel, symmetric, from their own values: each one's
    values, channel axis and whether it gets 7 bits."""
    from onnxruntime.quantization.qdq_quantizer import QDQQuantTensorType
    from onnxruntime.quantization.quant_utils import normalize_axis, tensor_proto_to_array

    if quantizer.block_size > 0 or quantizer.min_real_range is not None:
        return {}
    initializers = {init.name: init for init in quantizer.model.initializer()}
    plain = {}
    for name, info in quantizer.tensors_to_quantize.items():
        overrides = quantizer.tensor_quant_overrides.get(name, [{}])
        axis = overrides[0].get("axis", info.axis)
        if (name not in initializers or info.tensor_type is not QDQQuantTensorType.WEIGHT or axis is None
                or any(set(o) - {"axis", "reduce_range"} for o in overrides)):
            continue
        data = tensor_proto_to_array(initializers[name])
        valid, axis = normalize_axis(axis, data.ndim)
        if valid and data.dtype == np.float32 and data.size:
            plain[name] = data, axis, overrides[0].get("reduce_range", quantizer.reduce_range)
    return plain


def _symmetric_channel_params(data: np.ndarray, axis: int, quant_type, reduce_range: bool
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Zero points and scales of `data`'s channels along `axis`, as onnxruntime's compute_scale_zp gives them
    channel by channel: the range widened to hold 0, made symmetric, its scale in float64 stored in float32;
    a channel of zeros gets scale 1 and zero point 0."""
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    qmin, qmax = get_qmin_qmax_for_qType(quant_type, reduce_range, symmetric=True)
    channels = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
    zero = np.float32(0)
    absmax = np.maximum(np.abs(np.minimum(channels.min(1), zero)), np.abs(np.maximum(channels.max(1), zero)))
    levels = np.array(qmax, dtype=np.float64) - np.array(qmin, dtype=np.float64)
    scale = (absmax.astype(np.float64) - (-absmax).astype(np.float64)) / levels
    zeros = scale < np.finfo(np.float32).tiny
    middle = np.array(np.round((qmin + qmax) / np.array(2.0, dtype=np.float64)), dtype=qmin.dtype)
    zero_point = np.where(zeros, np.zeros((), qmin.dtype), middle).astype(qmin.dtype)
    return zero_point, np.where(zeros, np.float32(1.0), scale.astype(np.float32))


@contextlib.contextmanager
def _int32_bias_checked_at_once():
    """onnxruntime checks, channel by channel in Python, whether each bias's scale (input scale x weight
    scale) is too small for int32 and then widens that weight scale: 0.45 s of a MobileNetV2 build's seven
    quantizations, where no channel needs it. The same test on all channels at once (the same operations in
    the same dtypes) answers that case; a layer where some channel does need it goes to onnxruntime's own."""
    from onnxruntime.quantization import qdq_quantizer
    from onnxruntime.quantization.quant_utils import tensor_proto_to_array

    name = "_adjust_weight_scale_for_int32_bias"
    original = getattr(qdq_quantizer.QDQQuantizer, name)
    int32 = np.iinfo(np.int32)
    levels = np.array(int32.max, dtype=np.float64) - np.array(int32.min + 1, dtype=np.float64)

    def adjusted(quantizer, input_scale, weight_scale, weight_name, bias, is_per_channel):
        if is_per_channel and weight_scale.ndim == 1 and weight_scale.size:
            smallest = 1.0001 * (2.0 * np.abs(tensor_proto_to_array(bias))) / levels
            candidate = np.array(input_scale.item(), dtype=np.float64) * weight_scale.astype(np.float64)
            if not ((candidate < smallest) & (candidate > 0.0)).any():
                return False, weight_scale
        return original(quantizer, input_scale, weight_scale, weight_name, bias, is_per_channel)

    setattr(qdq_quantizer.QDQQuantizer, name, adjusted)
    try:
        yield
    finally:
        setattr(qdq_quantizer.QDQQuantizer, name, original)


def _weight_settings(quantizer) -> tuple:
    """Everything onnxruntime's QDQQuantizer._calc_initializer_quant_params reads: the initializers marked
    for quantization (their bytes and how each is marked, overrides included) and the quantizer's
    weight and activation settings."""
    initializers = {init.name: init for init in quantizer.model.initializer()}
    marked = tuple((name, info.tensor_type, info.axis, info.data_type, _content(initializers[name]),
                    repr(quantizer.tensor_quant_overrides.get(name, None)))
                   for name, info in quantizer.tensors_to_quantize.items() if name in initializers)
    return (marked, quantizer.weight_qType, quantizer.activation_qType, quantizer._is_weight_symmetric,
            quantizer.is_activation_symmetric, quantizer.reduce_range, quantizer.min_real_range,
            quantizer.block_size)


def _content(value):
    """A hashable stand-in for an argument: an array or a tensor by its bytes."""
    if isinstance(value, np.ndarray):
        return value.dtype.str, value.shape, value.tobytes()
    if isinstance(value, onnx.TensorProto) and value.HasField("raw_data"):  # its bytes as stored: no serializing
        return value.name, value.data_type, tuple(value.dims), value.raw_data
    if hasattr(value, "SerializeToString"):
        return value.SerializeToString(deterministic=True)
    return value


def _copy(answer):
    """A copy of a cached (zero point, scale) pair of arrays or quantized tensor."""
    if isinstance(answer, tuple):
        return tuple(part.copy() for part in answer)
    return copy.copy(answer)


def _with_constant_input(model: ir.Model, op_types: tuple[str, ...]) -> list[str]:
    """Names of the nodes of `op_types` with a constant input, naming any unnamed one (the quantizer
    excludes nodes by name)."""
    found = []
    for index, node in enumerate(model.graph):
        if node.op_type in op_types and any(v is not None and v.const_value is not None for v in node.inputs):
            node.name = node.name or f"{node.op_type}_{index}"
            found.append(node.name)
    return found


def _weights_by_input(model: ir.Model) -> list[tuple[str, str]]:
    """(data input, weight) of every MAC layer whose weight is an initializer."""
    return [(node.inputs[0].name, node.inputs[1].name) for node in model.graph if node.op_type in MAC_OPS
            and node.inputs[1] is not None and node.inputs[1].is_initializer()]


def _first_layer_weights(model: ir.Model) -> list[str]:
    """Weights of the MAC layers that no other MAC layer precedes: they see the inputs' full range."""
    after_mac: set[int] = set()
    weights = []
    for node in model.graph:  # topological order
        fed = any(v is not None and v.producer() is not None and id(v.producer()) in after_mac for v in node.inputs)
        if node.op_type in MAC_OPS and not fed:
            weights += [v.name for v in node.inputs[1:2] if v is not None and v.is_initializer()]
        if node.op_type in MAC_OPS or fed:
            after_mac.add(id(node))
    return weights
