"""TensorRT adapter for the edgec harness: the engine is built on this device, on first use, and cached.

Three ways to run, picked by `TensorRTSession.for_device`:
  EngineSession          TensorRT's Python API (tensorrt + cuda-python): builds the engine from model.onnx
                         with the manifest's settings into engines/, keyed by GPU name, compute capability,
                         TensorRT version and model sha256, and rebuilds one whose key differs;
  ProviderSession        onnxruntime-gpu's TensorRT execution provider (engine cache on), where the tensorrt
                         package is missing;
  HostSimulationSession  `--simulate`: onnxruntime on the CPU, the build host's simulation; never a device result.
With none of the first two here, exit 5 names what to install.

Written against TensorRT 10's Python API (Builder, OnnxParser, IBuilderConfig, IRuntime, IExecutionContext
with execute_async_v3, IProfiler, IEngineInspector) and cuda-python's runtime bindings. No GPU or TensorRT
was available where this was written: only HostSimulationSession and the refusals have run.
"""
import hashlib
import json
import os
import re
import time

import numpy as np

from .errors import ExitCode, HarnessError
from .manifest import RuntimeCheck
from .session import LayerTimer, Session

INSTALL = ("install tensorrt or onnxruntime-gpu (pip install -r requirements.txt names both; on Jetson, TensorRT "
           "comes with JetPack)")
TRT_PROVIDER = "TensorrtExecutionProvider"


def _importable(module):
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class TensorRTSession(Session):
    runtime = "tensorrt"

    @classmethod
    def for_device(cls, simulate):
        if simulate:
            return HostSimulationSession
        if _importable("tensorrt"):
            return EngineSession
        if _importable("onnxruntime"):
            import onnxruntime

            if TRT_PROVIDER in onnxruntime.get_available_providers():
                return ProviderSession
        raise HarnessError(f"tensorrt is not installed here, nor onnxruntime-gpu's TensorRT execution provider: "
                           f"{INSTALL}", ExitCode.RUNTIME_MISSING)

    def _path(self, name):
        return os.path.join(self.folder, name)


# --------------------------------------------------------------------------- onnxruntime: provider and simulation


class _OnnxRuntime(TensorRTSession):
    """onnxruntime running a model file of the artifact with a list of execution providers."""

    optimized = True  # False: the graph as written, each Q/DQ pair computed in float

    @property
    def runtime_errors(self):
        """onnxruntime's own failures (read when one is raised: onnxruntime is imported by then)."""
        from onnxruntime.capi import onnxruntime_pybind11_state as failure

        return failure.Fail, failure.InvalidArgument, failure.RuntimeException, failure.InvalidGraph

    def _open(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if not self.optimized:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        self.session = ort.InferenceSession(self._path(self._model()), options, providers=self._providers())
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, feed):
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))


class HostSimulationSession(_OnnxRuntime):
    """The build host's check: onnxruntime's CPU kernels on the model the manifest names (the QDQ graph for
    int8, an fp16 copy for fp16). It simulates TensorRT's arithmetic; it is not an engine."""

    runtime = "onnxruntime"
    # TensorRT's int8 accumulates in int32; onnxruntime's fused S8S8 CPU kernels saturate int16 pairs on AVX2
    # without VNNI (MobileNetV2's int8 logits: top-1 agreement 38 % of 8 crops, 67 % of the decisive ones)
    optimized = False

    def _model(self):
        return self.manifest.backend.host_simulation.model

    def _providers(self):
        return ["CPUExecutionProvider"]

    def _checks(self):
        return {"simulation": RuntimeCheck(True, self.manifest.backend.host_simulation.note)}


class ProviderSession(_OnnxRuntime):
    """onnxruntime-gpu's TensorRT execution provider with the manifest's engine settings; its engines and timing
    cache go to engines/ like the TensorRT API's."""

    runtime = "onnxruntime-gpu"

    def _model(self):
        return self.manifest.model.main

    def _providers(self):
        settings = self.manifest.backend.engine
        cache = self._path(settings.engines)
        os.makedirs(cache, exist_ok=True)
        options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                   "trt_timing_cache_enable": True, "trt_timing_cache_path": cache,
                   "trt_fp16_enable": "FP16" in settings.precision_flags,
                   "trt_int8_enable": "INT8" in settings.precision_flags,
                   "trt_max_workspace_size": settings.workspace_mb << 20,
                   "trt_builder_optimization_level": settings.optimization_level}
        if settings.dla_core is not None:
            options.update(trt_dla_enable=True, trt_dla_core=settings.dla_core)
        if settings.profiles:
            for kind in ("min", "opt", "max"):
                options[f"trt_profile_{kind}_shapes"] = ",".join(
                    f"{p.input}:{'x'.join(map(str, getattr(p, kind)))}" for p in settings.profiles)
        return [(TRT_PROVIDER, options), "CUDAExecutionProvider"]

    def _open(self):
        import sys

        print("note: the tensorrt package is not installed: running onnxruntime's TensorRT execution provider",
              file=sys.stderr)
        super()._open()
        if self.session.get_providers()[0] != TRT_PROVIDER:
            raise HarnessError(f"onnxruntime-gpu could not load TensorRT's libraries: {INSTALL}",
                               ExitCode.RUNTIME_MISSING)

    def _checks(self):
        note = "run by onnxruntime's TensorRT execution provider, which does not show the precision each layer runs"
        return {"execution_provider": RuntimeCheck(True, note + (": int8 placement not proven on this device"
                                                                 if self.manifest.backend.int8_layers else ""))}


# --------------------------------------------------------------------------- TensorRT's own API


def _cuda():
    """cuda-python's runtime module (cuda.bindings.runtime; `cuda.cudart` before 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def _checked(result):
    """cuda-python returns (error, values...): raise on an error, return the values."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise HarnessError(f"CUDA call failed: {error}")
    return values[0] if len(values) == 1 else tuple(values)


def engine_key(cuda, trt, model_sha256, settings):
    """What an engine is valid for: this GPU model, its compute capability, this TensorRT and this model,
    built with these settings."""
    props = _checked(cuda.cudaGetDeviceProperties(_checked(cuda.cudaGetDevice())))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}",
            "tensorrt": trt.__version__, "model_sha256": model_sha256,
            "settings": json.loads(json.dumps(settings, default=lambda o: o.__dict__, sort_keys=True))}


def engine_file(key):
    """engines/<gpu>-sm<cc>-trt<version>-<digest>.engine: one file per device kind and settings."""
    slug = "".join(c if c.isalnum() else "-" for c in key["gpu"]).strip("-").lower()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"{slug}-sm{key['compute_capability'].replace('.', '')}-trt{key['tensorrt']}-{digest}.engine"


class Buffer:
    """One device allocation, grown as needed."""

    def __init__(self, cuda):
        self.cuda, self.pointer, self.bytes = cuda, 0, 0

    def fit(self, nbytes):
        if nbytes > self.bytes:
            self.free()
            self.pointer, self.bytes = _checked(self.cuda.cudaMalloc(max(nbytes, 1))), nbytes
        return self.pointer

    def free(self):
        if self.pointer:
            _checked(self.cuda.cudaFree(self.pointer))
            self.pointer, self.bytes = 0, 0


class EngineSession(TensorRTSession):
    """TensorRT's Python API on this device's GPU (or DLA core)."""

    runtime_errors = (RuntimeError, TypeError)

    @classmethod
    def version(cls):
        import tensorrt  # JetPack installs it without pip's metadata

        return tensorrt.__version__

    def _open(self):
        import tensorrt as trt

        self.trt, self.cuda = trt, _cuda()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.settings = self.manifest.backend.engine
        self.engine_report = self._load_or_build(force=False)
        self.context = self.engine.create_execution_context()
        self.stream = _checked(self.cuda.cudaStreamCreate())
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.buffers = {name: Buffer(self.cuda) for name in self.names}

    # -- the engine cache --------------------------------------------------------------------

    def _load_or_build(self, force):
        model_sha = self.manifest.model.files[self.manifest.model.main].sha256
        key = engine_key(self.cuda, self.trt, model_sha, self.settings)
        folder = self._path(self.settings.engines)
        path = os.path.join(folder, engine_file(key))
        cached = _read_json(path + ".json")
        started = time.perf_counter()
        if force:
            reason = "forced"
        elif cached is None or not os.path.isfile(path):
            reason = "no cached engine"
        elif cached != key:
            reason = "the cached engine's key differs"
        else:
            with open(path, "rb") as f:
                self.engine = self.trt.Runtime(self.logger).deserialize_cuda_engine(f.read())
            if self.engine is not None:
                return {"engine": os.path.relpath(path, self.folder), "built": False, "key": key}
            reason = "the cached engine did not load"
        blob = self._build(folder)
        _write_atomic(path, blob)
        _write_atomic(path + ".json", json.dumps(key, indent=2, sort_keys=True).encode())
        self.engine = self.trt.Runtime(self.logger).deserialize_cuda_engine(blob)
        return {"engine": os.path.relpath(path, self.folder), "built": True, "why": reason,
                "build_s": round(time.perf_counter() - started, 3), "key": key}

    def _build(self, folder):
        """Parse model.onnx and build a serialized engine with the manifest's settings and the timing cache."""
        trt, settings = self.trt, self.settings
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(self._path(self.manifest.model.main)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise HarnessError(f"TensorRT's ONNX parser refused the model: {errors[0] if errors else 'no reason'}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
        config.builder_optimization_level = settings.optimization_level
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector's per-layer precisions
        for flag in settings.precision_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        if not settings.precision_flags:
            config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 matmuls lose about 3 digits
        if settings.dla_core is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = settings.dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        if settings.profiles:
            profile = builder.create_optimization_profile()
            for p in settings.profiles:
                profile.set_shape(p.input, p.min, p.opt, p.max)
            config.add_optimization_profile(profile)
        cache_path = self._path(settings.timing_cache)
        previous = open(cache_path, "rb").read() if os.path.isfile(cache_path) else b""
        config.set_timing_cache(config.create_timing_cache(previous), False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise HarnessError("TensorRT could not build an engine for this model (its log above says why)")
        os.makedirs(folder, exist_ok=True)
        _write_atomic(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
        return bytes(memoryview(serialized))

    def build_engine(self, force):
        if force:
            self.engine_report = self._load_or_build(force=True)
            self.context = self.engine.create_execution_context()
        return self.engine_report

    # -- running -----------------------------------------------------------------------------

    def _bind(self, feed):
        """Set input shapes and every tensor's device address; return the output host arrays."""
        trt = self.trt
        for name in self.inputs:
            self.context.set_input_shape(name, feed[name].shape)
        outputs = {}
        for name in self.names:
            if name in self.inputs:
                nbytes = feed[name].nbytes
            else:
                dtype = trt.nptype(self.engine.get_tensor_dtype(name))
                outputs[name] = np.empty(tuple(self.context.get_tensor_shape(name)), dtype)
                nbytes = outputs[name].nbytes
            self.context.set_tensor_address(name, self.buffers[name].fit(nbytes))
        return outputs

    def _copy_in(self, feed):
        kind = self.cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self.inputs:
            array = np.ascontiguousarray(feed[name])
            _checked(self.cuda.cudaMemcpyAsync(self.buffers[name].pointer, array.ctypes.data, array.nbytes, kind,
                                               self.stream))

    def _copy_out(self, outputs):
        kind = self.cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in outputs.items():
            _checked(self.cuda.cudaMemcpyAsync(array.ctypes.data, self.buffers[name].pointer, array.nbytes, kind,
                                               self.stream))

    def _execute(self):
        if not self.context.execute_async_v3(int(self.stream)):  # TensorRT takes the stream's handle
            raise HarnessError("TensorRT could not run the engine (execute_async_v3 returned False)")

    def _run(self, feed):
        outputs = self._bind(feed)
        self._copy_in(feed)
        self._execute()
        self._copy_out(outputs)
        _checked(self.cuda.cudaStreamSynchronize(self.stream))
        return outputs

    def _device_timing(self, feed, warmup, iters, cuda_graph):
        """trtexec's report: host-to-device, GPU compute and device-to-host times from CUDA events, each apart."""
        cuda = self.cuda
        outputs = self._bind(feed)
        launch = self._graph_launcher() if cuda_graph else self._execute
        events = [_checked(cuda.cudaEventCreate()) for _ in range(4)]
        times = {"h2d_ms": [], "compute_ms": [], "d2h_ms": []}
        try:
            for i in range(warmup + iters):
                _checked(cuda.cudaEventRecord(events[0], self.stream))
                self._copy_in(feed)
                _checked(cuda.cudaEventRecord(events[1], self.stream))
                launch()
                _checked(cuda.cudaEventRecord(events[2], self.stream))
                self._copy_out(outputs)
                _checked(cuda.cudaEventRecord(events[3], self.stream))
                _checked(cuda.cudaEventSynchronize(events[3]))
                if i >= warmup:
                    for name, (a, b) in zip(times, ((0, 1), (1, 2), (2, 3))):
                        times[name].append(_checked(cuda.cudaEventElapsedTime(events[a], events[b])))
        finally:
            for event in events:
                cuda.cudaEventDestroy(event)
        report = {"cuda_graph": cuda_graph, "engine": self.engine_report["engine"]}
        for name, values in times.items():
            values = np.array(values)
            report[name] = {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
                            "p90": float(np.percentile(values, 90)), "p99": float(np.percentile(values, 99)),
                            "min": float(values.min()), "max": float(values.max())}
        report["gpu_compute_mean_ms"] = report["compute_ms"]["mean"]
        report["gpu_throughput_per_s"] = 1000.0 / report["compute_ms"]["mean"]
        return report

    def _graph_launcher(self):
        """Capture one enqueue as a CUDA graph and return what replays it (TensorRT's developer guide: enqueue
        once before capturing, so that deferred shape work is done outside the capture)."""
        cuda = self.cuda
        self._execute()
        _checked(cuda.cudaStreamSynchronize(self.stream))
        _checked(cuda.cudaStreamBeginCapture(self.stream, cuda.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
        self._execute()
        graph = _checked(cuda.cudaStreamEndCapture(self.stream))
        instance = _checked(cuda.cudaGraphInstantiate(graph, 0))
        return lambda: _checked(cuda.cudaGraphLaunch(instance, self.stream))

    def _layer_timer(self, feed):
        trt = self.trt

        class Profiler(trt.IProfiler):
            def __init__(self):
                trt.IProfiler.__init__(self)
                self.sums = {}

            def report_layer_time(self, layer_name, ms):
                self.sums[layer_name] = self.sums.get(layer_name, 0.0) + ms

        profiler = Profiler()
        self.context.profiler = profiler
        return ProfilerTimer(self, feed, profiler, self._layers())

    def _layers(self):
        """The engine inspector's layers (name -> description), with the precision each really runs."""
        inspector = self.engine.create_engine_inspector()
        info = json.loads(inspector.get_engine_information(self.trt.LayerInformationFormat.JSON))
        return {layer["Name"]: layer for layer in info.get("Layers", []) if isinstance(layer, dict)}

    def _checks(self):
        expected = self.manifest.backend.int8_layers
        if not expected:
            return {}
        layers = self._layers()
        precision = {name: _precision(layer) for name, layer in layers.items()}
        bad = []
        for node in expected:
            ran = [p for name, p in precision.items() if node in re.split(r" \+ |[()]", name)]
            if "int8" not in ran:
                bad.append(f"{node} ran {'/'.join(sorted(set(ran))) or 'nowhere (not in the engine)'}")
        detail = f"{len(expected) - len(bad)}/{len(expected)} layers meant for int8 run in int8"
        return {"int8_layers": RuntimeCheck(not bad, detail + (": " + "; ".join(bad[:5]) if bad else ""),
                                            {"engine_layers": {n: p for n, p in precision.items()}})}


class ProfilerTimer(LayerTimer):
    """TensorRT's IProfiler, attached to the execution context: it reports each layer after each run."""

    def __init__(self, session, feed, profiler, layers):
        self.session, self.feed, self.profiler, self.layers = session, feed, profiler, layers

    def run(self):
        self.session._run(self.feed)

    def reset(self):
        self.profiler.sums = {}

    def totals(self):
        return {(name, self.layers.get(name, {}).get("LayerType", ""), _precision(self.layers.get(name, {}))): ms
                for name, ms in self.profiler.sums.items()}

    def close(self):
        self.session.context.profiler = None


def _precision(layer):
    """The precision a layer runs at (int8, fp16, fp32), from its first input's format in the inspector
    (a description such as "Row major linear INT8 format"); '' where it names none."""
    inputs = layer.get("Inputs") or [{}]
    text = str(inputs[0].get("Format/Datatype", "")).lower() if isinstance(inputs[0], dict) else ""
    for precision, words in (("int8", ("int8",)), ("fp16", ("fp16", "half")), ("fp32", ("fp32", "float"))):
        if any(word in text for word in words):
            return precision
    return ""


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_atomic(path, data):
    temporary = path + ".partial"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)
