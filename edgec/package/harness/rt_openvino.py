"""OpenVINO adapter for the edgec harness.

OpenVINO picks bf16 for float layers on CPUs that have it, so the precision it runs is read
from the manifest and set on purpose. The checks prove from the compiled model's runtime
graph that every layer the build quantized really ran in int8, and that the inference
precision is the one the manifest asks for. `run` is the latency mode (one infer request,
PERFORMANCE_HINT LATENCY); throughput keeps several requests in flight (hint THROUGHPUT).
"""
import os
import time

import openvino as ov

from .manifest import CompiledLayer, RuntimeCheck
from .session import LayerTimer, Session

INT8 = ("u8", "i8")


def compile_model(core, model, config, threads, hint="LATENCY", profiling=False):
    """Compile with the manifest's inference precision, a performance hint and the thread count."""
    settings = {"INFERENCE_PRECISION_HINT": config.inference_precision, "PERFORMANCE_HINT": hint}
    if threads:
        settings["INFERENCE_NUM_THREADS"] = int(threads)
    if profiling:
        settings["PERF_COUNT"] = True
    return core.compile_model(model, config.device, settings)


def compiled_layers(compiled):
    """Every executed layer of a compiled model: its type, the precision it ran, its kernel, and the
    names of the model's nodes it was fused from. The build records them; verify checks them."""
    result = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Const", "Input", "Output"):
            continue
        result.append(CompiledLayer(op.get_friendly_name(), kind, info["runtimePrecision"].astype(str),
                                    info["primitiveType"].astype(str),
                                    [n for n in info["originalLayersNames"].astype(str).split(",") if n]))
    return result


class OpenVINOSession(Session):
    runtime = "openvino"
    runtime_errors = (RuntimeError,)  # OpenVINO raises nothing more specific

    def _open(self):
        self.config = self.manifest.backend
        self.core = ov.Core()
        self.model = self.core.read_model(os.path.join(self.folder, self.manifest.model.main))
        self.compiled = compile_model(self.core, self.model, self.config, self.threads)
        self.request = self.compiled.create_infer_request()
        self.ports = self.compiled.inputs  # read once: each read makes new port objects

    def _ordered(self, feed):
        """Inputs by port index: OpenVINO keeps the model's order, not always its names (an output that is
        an input, a folded scalar, an operator optimized away); outputs are read back the same way.
        An input OpenVINO dropped (an empty axes list it folded) is matched by the names of those kept.
        A dict, not a list: OpenVINO takes a list 3 % slower on a 0.6 ms model (PP-OCR cls)."""
        specs, ports = self.manifest.inputs, self.ports
        if len(ports) == len(specs):
            return {i: feed[spec.name] for i, spec in enumerate(specs)}
        return {i: feed[next((s.name for s in specs if s.name in port.get_names()), specs[i].name)]
                for i, port in enumerate(ports)}

    def _run(self, feed):
        results = self.request.infer(self._ordered(feed)).to_tuple()  # by position, without a lookup each
        return {spec.name: results[i] for i, spec in enumerate(self.manifest.outputs)}

    def _throughput(self, feed, iters, requests=0):
        """Inferences per second with `requests` in flight (0: OpenVINO's optimal number)."""
        compiled = compile_model(self.core, self.model, self.config, self.threads, "THROUGHPUT")
        queue = ov.AsyncInferQueue(compiled, requests)
        inputs = self._ordered(feed)
        for _ in range(len(queue)):  # warm every request once
            queue.start_async(inputs)
        queue.wait_all()
        start = time.perf_counter()
        for _ in range(iters):
            queue.start_async(inputs)
        queue.wait_all()
        seconds = time.perf_counter() - start
        return {"requests": len(queue), "streams": int(compiled.get_property("NUM_STREAMS")),
                "iters": iters, "inferences_per_s": round(iters / seconds, 2)}

    def _layer_timer(self, feed):
        compiled = compile_model(self.core, self.model, self.config, self.threads, profiling=True)
        return CounterTimer(compiled.create_infer_request(), self._ordered(feed))

    def _checks(self):
        checks = {}
        want = self.config.inference_precision
        have = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        checks["inference_precision"] = RuntimeCheck(have == want, f"float layers run in {have} (manifest: {want})")
        expected = self.config.int8_layers
        if expected:
            ran = {}
            for layer in compiled_layers(self.compiled):
                for name in layer.fused_from + [layer.name]:
                    ran[name] = layer.precision
            bad = [f"{name} ran {_ran(ran, name) or 'nowhere (not in the runtime graph)'}"
                   for name in expected if _ran(ran, name) not in INT8]
            detail = f"{len(expected) - len(bad)}/{len(expected)} layers meant for int8 ran in int8"
            checks["int8_layers"] = RuntimeCheck(not bad, detail + (": " + "; ".join(bad[:5]) if bad else ""))
        return checks


class CounterTimer(LayerTimer):
    """OpenVINO's performance counters, read after every inference."""

    def __init__(self, request, inputs):
        self.request, self.inputs, self.sums = request, inputs, {}

    def run(self):
        self.request.infer(self.inputs)
        for info in self.request.profiling_info:
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                key = (info.node_name, info.node_type, info.exec_type)
                self.sums[key] = self.sums.get(key, 0.0) + info.real_time.total_seconds() * 1000.0

    def reset(self):
        self.sums = {}

    def totals(self):
        return self.sums


def _ran(ran, name):
    """The precision a model node ran in; OpenVINO's int8 passes may rename it to name/suffix."""
    if name in ran:
        return ran[name]
    return next((p for n, p in ran.items() if n.startswith(name + "/")), None)
