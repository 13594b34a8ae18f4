"""The artifact's manifest (edgec.json) as types: what the build writes and every reader checks.

The manifest is JSON made from these dataclasses and read back into them. Reading validates
the whole document first: a missing field (one without a default), a field these types do not
know, a value of the wrong type, or a schema newer than this code each end in one line that
names the place (`edgec.json: inputs[0].dtype: expected a string`).

Typing uses the `typing` module's generics so the harness runs on the Python 3.8+ of older
boards.
"""
import dataclasses
import functools
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from .errors import HarnessError

SCHEMA_VERSION = 4  # 3: `files` hashes every file of the artifact; 4: outputs judged by what they mean
MANIFEST = "edgec.json"


class ManifestError(HarnessError):
    """A manifest (or a target file) that these types cannot read."""


# --------------------------------------------------------------------------- the tensor interface


@dataclass
class Quantization:
    """The affine map of an integer tensor: real value = (stored value - zero_point) * scale."""

    scale: float
    zero_point: int


@dataclass
class TensorSpec:
    """One input or output of a model, as a caller feeds or reads it.

    `source_perm` is the transpose that takes the source model's tensor to this one
    (np.transpose(source, source_perm)), e.g. [0, 2, 3, 1] for an NCHW model with NHWC I/O.
    `batch_axis` is the axis along which samples may be concatenated; None means the tensor has
    no batch, and runs are fed one at a time.
    """

    name: str
    shape: Optional[List[Union[int, str]]]  # None: rank unknown; a string names a symbolic dimension
    dtype: str  # numpy's name: float32, int8, int64, bool, ...
    layout: Optional[str] = None  # NCHW or NHWC for images
    source_perm: Optional[List[int]] = None
    quantization: Optional[Quantization] = None
    batch_axis: Optional[int] = None

    @property
    def rank(self) -> Optional[int]:
        return None if self.shape is None else len(self.shape)


# --------------------------------------------------------------------------- verification


@dataclass
class Criterion:
    """One property an output must have: `measure` (a name in compare.MEASURES) within `limit`.

    Error measures must be at most their limit; agreement measures (compare.AGREEMENTS) at least.
    """

    measure: str
    limit: float


@dataclass
class OutputPolicy:
    """How one output is judged: what it means (edgec.package.policy.KINDS), the criteria it must meet,
    and the measures shown beside them without a limit."""

    kind: str
    criteria: List[Criterion]
    report: List[str] = field(default_factory=list)


@dataclass
class ComparisonPolicy:
    """How outputs are judged against a reference (Polygraphy's CompareFunc): a default policy and
    per-output ones."""

    default: OutputPolicy
    outputs: Dict[str, OutputPolicy] = field(default_factory=dict)

    def policy(self, output: str) -> OutputPolicy:
        return self.outputs.get(output, self.default)


@dataclass
class OutputCheck:
    """One output compared with its reference: every measure taken, and the verdict."""

    passed: bool
    measures: Dict[str, float]
    detail: str = ""


@dataclass
class RuntimeCheck:
    """A runtime's own check (the precision layers ran in, delegation, ...)."""

    passed: bool
    detail: str
    facts: Dict[str, Any] = field(default_factory=dict)


@dataclass
class VerificationResult:
    """What one verify run found, on one device."""

    device: str
    passed: bool
    samples: int
    checks: Dict[str, Dict[str, OutputCheck]]  # reference name -> output -> check
    runtime_checks: Dict[str, RuntimeCheck]


@dataclass
class RunInfo:
    """Where a harness command ran: every `run.py --json` report holds one under "run"."""

    command: str
    runtime: str
    runtime_version: str
    machine: str
    python: str
    threads: Optional[int]


@dataclass
class Verification:
    """How the artifact is judged, and what the build host found.

    `reference` judges outputs against the source model's (samples/expected.npz); `build_host`
    judges a device against the build host running this same artifact (samples/host.npz).
    """

    reference: ComparisonPolicy
    build_host: ComparisonPolicy
    result: Optional[VerificationResult] = None


@dataclass
class Samples:
    """The bundled samples. Each array is stacked along a new leading axis, one entry per run:
    inputs in the artifact's interface, outputs as real values in its output layout."""

    count: int
    inputs: str = "samples/inputs.npz"
    expected: str = "samples/expected.npz"
    host: str = "samples/host.npz"


# --------------------------------------------------------------------------- runtime configurations


@dataclass
class RuntimeConfig:
    """What one backend built and what its harness adapter needs to run it; `name` is the backend."""

    name: str


@dataclass
class OnnxRuntimeConfig(RuntimeConfig):
    graph_optimization_level: str  # the level the saved model was optimized at
    nodes: int
    fp16_weights: int = 0  # float32 weights stored as float16 (compute stays fp32)


@dataclass
class CompiledLayer:
    """One layer of a compiled OpenVINO model, with the precision it ran in."""

    name: str
    type: str
    precision: str
    kernel: str
    fused_from: List[str]


@dataclass
class OpenVINOConfig(RuntimeConfig):
    device: str
    inference_precision: str  # set on purpose: left alone, OpenVINO runs float layers in bf16 where it can
    weights: str
    int8_layers: List[str]  # layers the build quantized: verify proves each ran in int8
    layers: List[CompiledLayer]
    quantizer: Optional[str] = None  # edgec or nncf, for int8
    nncf: Optional[Dict[str, Any]] = None  # NNCF's settings and accuracy control, when it quantized


@dataclass
class TFLiteConfig(RuntimeConfig):
    operators: Dict[str, int]
    io_layout: str
    io_dtype: str
    delegate: str = "XNNPACK"
    notes: List[str] = field(default_factory=list)  # e.g. which operators stay float in an int8 build


@dataclass
class TVMConfig(RuntimeConfig):
    tvm_target: Dict[str, Any]
    cpu: str
    cpu_detected: bool
    cross_compiled: bool
    libraries: Dict[str, str]  # machine architecture -> shared library
    tuning: Dict[str, Any]
    executor: str = "relax.VirtualMachine"
    host_twin: Optional[str] = None


@dataclass
class ShapeProfile:
    """One input's TensorRT optimization profile: the smallest, typical and largest shapes it will take."""

    input: str
    min: List[int]
    opt: List[int]
    max: List[int]


@dataclass
class EngineSettings:
    """How the device builds its TensorRT engine (the trtexec flags of the same names)."""

    precision_flags: List[str]  # BuilderFlag names set on the builder config: FP16, INT8
    workspace_mb: int  # the builder's workspace memory pool limit
    optimization_level: int  # BuilderConfig.builder_optimization_level, 0-5
    profiles: List[ShapeProfile] = field(default_factory=list)  # empty: every input shape is static
    dla_core: Optional[int] = None  # None: the GPU; else this DLA core, with GPU fallback
    engines: str = "engines"  # the folder of device-built engines and the timing cache (not hashed)
    timing_cache: str = "engines/timing.cache"


@dataclass
class HostSimulation:
    """What the build host ran instead of an engine: the model in onnxruntime on the CPU."""

    model: str  # the file onnxruntime ran: the QDQ graph for int8, an fp16 copy for fp16
    note: str


@dataclass
class TensorRTConfig(RuntimeConfig):
    engine: EngineSettings
    host_simulation: HostSimulation
    int8_layers: List[str]  # Conv/Gemm/MatMul nodes with Q/DQ inputs: verify proves each runs in int8


# A new backend adds its configuration class here.
RUNTIME_CONFIGS = {"onnxruntime": OnnxRuntimeConfig, "openvino": OpenVINOConfig, "tflite": TFLiteConfig,
                   "tvm": TVMConfig, "tensorrt": TensorRTConfig}


# --------------------------------------------------------------------------- the manifest


@dataclass
class Target:
    """A target: which backend, the device facts and the int8 scheme (a TOML file in edgec/targets)."""

    name: str
    backend: str
    description: str = ""
    arch: str = "any"
    cpu: str = ""
    device: str = "local"
    precision: str = "fp32"
    precisions: List[str] = field(default_factory=lambda: ["fp32"])
    threads: int = 2
    static_shapes: bool = False
    quantization: Dict[str, Any] = field(default_factory=dict)  # the [quantization] scheme table
    options: Dict[str, Any] = field(default_factory=dict)  # defaults for the backend's declared options
    refused: Dict[str, str] = field(default_factory=dict)  # precision -> why this target does not build it
    operators: List[str] = field(default_factory=list)  # the runtime's operators, where the target lists them
    runtime_version: str = ""  # the runtime release the device brings, where the build host cannot install it
    requires: List[str] = field(default_factory=list)  # ISA features its compiled code uses (refused without)
    faster_with: Dict[str, List[str]] = field(default_factory=dict)  # precision -> features it is slower without
    # precision -> {"KIND.MEASURE": limit}: verification limits tighter than edgec's (edgec.package.policy)
    verification: Dict[str, Dict[str, float]] = field(default_factory=dict)


@dataclass
class FileEntry:
    sha256: str
    bytes: int


@dataclass
class ModelFiles:
    main: str  # the file the adapter loads
    files: Dict[str, FileEntry]  # every model file, hashed
    bytes: int


@dataclass
class Runtime:
    name: str  # the pip distribution
    version: str
    requirement: str
    session: str  # "module:Class" of the harness adapter in edgec_harness/


@dataclass
class Source:
    name: str
    path: str
    sha256: Optional[str]
    bytes: Optional[int]
    opset: Optional[int]
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]


@dataclass
class BuildHost:
    machine: str
    python: str
    onnx_ir: str


@dataclass
class LayerError:
    """One quantized layer's damage on calibration samples (quantize/report.py)."""

    name: str
    op: str
    tensor: str
    sqnr_db: float
    cosine: float
    added_db: float  # SQNR this layer loses relative to its quantized inputs
    precision: str = "int8"
    worst_slice_db: Optional[float] = None  # SQNR of its worst channel, or of a Concat's worst input
    harm_db: Optional[float] = None  # the rank: the larger of added_db and the whole-to-worst-slice gap


@dataclass
class MixedRangeHead:
    """A Concat whose inputs' calibrated ranges differ by more than a factor (quantize/ranges.py)."""

    node: str
    spans: List[float]  # each input's calibrated max - min
    ratio: float  # the widest span over the narrowest
    float_nodes: List[str]  # kept float: the Concat and all after it; empty where MAC layers follow


@dataclass
class FloatIsland:
    """A node an int8 graph computes in float between int8 tensors (quantize/islands.py)."""

    node: str
    op_type: str
    elements: int  # its outputs' elements per inference (0 where their shapes are unknown)


@dataclass
class SchemeCandidate:
    """One int8 candidate (a scheme, the backend's own engine, or a calibration method) as measured
    on the calibration samples (quantize/choose.py)."""

    name: str
    overrides: Dict[str, Any]  # its keys over the target's [quantization] scheme, or the options of an engine
    top1_agreement: Optional[float]  # percent, with fp32; null where the first output is no score vector
    sqnr_db: float  # the worst output's, against fp32
    p50_ms: Optional[float] = None  # median of interleaved rounds, one thread, on the build host; null: not timed
    top1_expected: Optional[float] = None  # percent: top-1 agreement with each row's error drawn from the others (quantize/choose.py)


@dataclass
class SchemeChoice:
    """Which int8 candidate was used (one of the target's schemes, the backend's own engine, or a
    calibration method), and why: measured, or given."""

    chosen: str
    why: str
    replay: str  # the flags that rebuild with this choice without measuring
    candidates: List[SchemeCandidate] = field(default_factory=list)  # empty where the choice was given
    options: Dict[str, Any] = field(default_factory=dict)  # the option values of `replay`, which the build used


@dataclass
class PolicyFallback:
    """The layers an int8 build kept float because its outputs failed the verification policy on the
    build's samples (quantize/fallback.py), and what that cost."""

    failed: Dict[str, str]  # output -> what plain int8 failed: the measure and its limit
    float_layers: List[str]  # most harmful first
    passed: bool  # every output meets the policy with these layers float
    int8_mac_share: float  # of the model's multiply-accumulates, with these layers float
    added_bytes: int  # weights stored float instead of int8
    latency_ratio: Optional[float] = None  # over plain int8's on the build host (noisy): onnxruntime, or the engine's runtime
    gave_up: str = ""  # why it stopped before every output passed
    order: str = "most harmful"  # which layers went float first: the most harmful, or those nearest the inputs


@dataclass
class QuantizationRecord:
    """How the model was made fp16 or int8."""

    precision: str
    engine: str
    weights: Optional[str] = None
    calibration: Optional[Dict[str, Any]] = None
    scheme: Optional[Dict[str, Any]] = None
    method: Optional[str] = None
    layers: List[LayerError] = field(default_factory=list)
    fallback: Optional[Dict[str, Any]] = None
    warning: Optional[str] = None
    opset: Optional[int] = None  # the default-domain opset the model was quantized at
    mixed_range_heads: List[MixedRangeHead] = field(default_factory=list)
    scheme_choice: Optional[SchemeChoice] = None
    calibration_choice: Optional[SchemeChoice] = None  # --calibration-method auto's measured choice
    bias_choice: Optional[SchemeChoice] = None  # --bias-correction auto's measured choice
    bias_corrected: int = 0  # layers whose bias absorbed their int8 weights' mean output shift (quantize/bias.py)
    float_islands: List[FloatIsland] = field(default_factory=list)
    int8_mac_share: Optional[float] = None  # of the multiply-accumulates: an int8 artifact runs at least 0.8
    policy_fallback: Optional[PolicyFallback] = None
    float_precision_choice: Optional[SchemeChoice] = None  # --float-precision auto's measured choice (OpenVINO)

    def chosen_options(self) -> Dict[str, Any]:
        """The option values of every int8 choice the build made (scheme, calibration method, bias
        correction, float precision): given to a rebuild, they replay the choices without measuring them again."""
        return {name: value for choice in (self.scheme_choice, self.calibration_choice, self.bias_choice,
                                           self.float_precision_choice)
                if choice is not None for name, value in choice.options.items()}


@dataclass
class PassesRecord:
    """What the shared passes did; `dropped` steps changed the numerics and were undone."""

    nodes_before: int
    nodes_after: int
    ops_after: Dict[str, int]
    warnings: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    max_error: Optional[float] = None  # the optimized graph's worst output error relative to its range


@dataclass
class BuildRecord:
    options: Dict[str, Any]
    input_shapes: List[str]
    calibration: Optional[str]
    passes: PassesRecord
    notes: List[str]
    const_inputs: List[str] = field(default_factory=list)  # --const-input NAME=VALUE bindings
    seconds: float = 0.0


@dataclass
class CandidateRecord:
    """One precision `--precision auto` built and measured on the device (edgec/choice/auto.py)."""

    precision: str
    status: str  # measured | refused | not faithful
    reason: str = ""
    size_bytes: Optional[int] = None
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    accuracy: Optional[float] = None


@dataclass
class PrecisionChoice:
    """How `--precision auto` chose: every candidate's figures, the rule, and why the winner won."""

    device: str
    emulated: bool  # True: the documented size rule chose, never the emulated timings
    measure: str
    baseline_accuracy: float
    max_accuracy_drop: float
    candidates: List[CandidateRecord]
    winner: str
    why: str


@dataclass
class Manifest:
    schema_version: int
    edgec_version: str
    created: str
    build_host: BuildHost
    source: Source
    target: Target
    backend: RuntimeConfig
    runtime: Runtime
    precision: str
    quantization: Optional[QuantizationRecord]
    model: ModelFiles
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    samples: Samples
    verification: Verification
    build: BuildRecord
    compression: Optional[Dict[str, Any]] = None  # edgec build --prune/--low-rank/--distill: the compress report
    choice: Optional[PrecisionChoice] = None  # set by --precision auto
    files: Dict[str, FileEntry] = field(default_factory=dict)  # every file but this manifest and its signature


# --------------------------------------------------------------------------- JSON in and out


def to_json(value: Any) -> Any:
    """Plain JSON values from dataclasses, lists and dicts; every field is written."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_json(value), indent=2, sort_keys=True) + "\n"


def from_json(cls: type, data: Any, where: str = MANIFEST) -> Any:
    """An instance of the dataclass `cls` from JSON values, refusing anything it does not describe."""
    if cls is RuntimeConfig:  # the backend's own configuration class, chosen by its name
        name = data.get("name") if isinstance(data, dict) else None
        if name not in RUNTIME_CONFIGS:
            raise ManifestError(f"{where}: unknown backend {name!r} (known: {', '.join(sorted(RUNTIME_CONFIGS))})")
        cls = RUNTIME_CONFIGS[name]
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ManifestError(f"{where}: unknown field {unknown[0]!r}")
    hints = _type_hints(cls)
    values = {}
    for name, spec in fields.items():
        if name in data:
            values[name] = _decode(hints[name], data[name], f"{where}.{name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ManifestError(f"{where}: missing field {name!r}")
    return cls(**values)


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict:
    """typing.get_type_hints, once per class: a manifest holds dozens of TensorSpecs and FileEntries."""
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_json(tp, value, where)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _decode(option, value, where)
            except ManifestError:
                continue
        raise ManifestError(f"{where}: expected {' or '.join(_name(a) for a in args)}, got {_kind(value)}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ManifestError(f"{where}: expected a list, got {_kind(value)}")
        return [_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: expected an object, got {_kind(value)}")
        return {k: _decode(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ManifestError(f"{where}: expected {_name(tp)}, got {_kind(value)}")


def _name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {json.dumps(value)[:40]}"


def loads(text: str, where: str = MANIFEST) -> Manifest:
    """Read a manifest, refusing one written for a newer or older schema in one line."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{where} is not valid JSON ({exc})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise ManifestError(f"{where} has no schema_version: it is not an edgec manifest")
    if version > SCHEMA_VERSION:
        raise ManifestError(f"{where} has schema version {version}, newer than the {SCHEMA_VERSION} this code "
                            "reads: use the edgec release that built it, or a newer one")
    if version < SCHEMA_VERSION:
        raise ManifestError(f"{where} has schema version {version}, from an older edgec: rebuild the artifact")
    return from_json(Manifest, data, where)
