"""OpenVINO adapter for the edgec harness (run.py).

OpenVINO picks bf16 for float layers on CPUs that have it, so the precision it runs is read
from the manifest and set on purpose. `verify_checks` proves from the compiled model's runtime
graph that every layer the build quantized really ran in int8, and that the inference
precision is the one the manifest asks for. `run` is the latency mode (one infer request,
PERFORMANCE_HINT LATENCY); `throughput` keeps several requests in flight (hint THROUGHPUT).
"""
import os
import time

import openvino as ov

INT8 = ("u8", "i8")


def runtime_version():
    return ov.get_version().split("-")[0]


def config(manifest, threads, hint="LATENCY", profiling=False):
    """The compile settings: the manifest's inference precision, a performance hint, threads."""
    backend = manifest["backend"]
    result = {"INFERENCE_PRECISION_HINT": backend["inference_precision"], "PERFORMANCE_HINT": hint}
    if threads:
        result["INFERENCE_NUM_THREADS"] = int(threads)
    if profiling:
        result["PERF_COUNT"] = True
    return result


class Session:
    def __init__(self, folder, manifest, threads):
        self.manifest, self.threads = manifest, threads
        self.device = manifest["backend"].get("device", "CPU")
        self.core = ov.Core()
        self.model = self.core.read_model(os.path.join(folder, manifest["model"]["main"]))
        self.compiled = self._compile()
        self.request = self.compiled.create_infer_request()
        self.names = [output.get_any_name() for output in self.compiled.outputs]

    def _compile(self, hint="LATENCY", profiling=False):
        return self.core.compile_model(self.model, self.device, config(self.manifest, self.threads, hint, profiling))

    def run(self, feeds):
        results = self.request.infer(feeds)
        return {name: results[i] for i, name in enumerate(self.names)}

    def throughput(self, feed, iters, requests=0):
        """Inferences per second with `requests` in flight (0: OpenVINO's optimal number)."""
        compiled = self._compile("THROUGHPUT")
        queue = ov.AsyncInferQueue(compiled, requests)
        for _ in range(len(queue)):  # warm every request once
            queue.start_async(feed)
        queue.wait_all()
        start = time.perf_counter()
        for _ in range(iters):
            queue.start_async(feed)
        queue.wait_all()
        seconds = time.perf_counter() - start
        return {"requests": len(queue), "streams": int(compiled.get_property("NUM_STREAMS")),
                "iters": iters, "inferences_per_s": round(iters / seconds, 2)}

    def profile(self, feed, warmup, iters):
        """Per-layer mean time (ms) from OpenVINO's performance counters, over `iters` runs."""
        request = self._compile(profiling=True).create_infer_request()
        for _ in range(warmup):
            request.infer(feed)
        totals = {}
        for _ in range(iters):
            request.infer(feed)
            for info in request.profiling_info:
                if info.status == ov.ProfilingInfo.Status.EXECUTED:
                    key = (info.node_name, info.node_type, info.exec_type)
                    totals[key] = totals.get(key, 0.0) + info.real_time.total_seconds() * 1000.0
        return [{"name": name, "op": op, "kernel": kernel, "ms": ms / iters}
                for (name, op, kernel), ms in totals.items()]

    def layers(self):
        """Every executed layer of the compiled model: name, type, the precision it ran, its kernel,
        and the names of the model's nodes it was fused from."""
        result = []
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str)
            if kind in ("Const", "Input", "Output"):
                continue
            result.append({"name": op.get_friendly_name(), "type": kind,
                           "precision": info["runtimePrecision"].astype(str),
                           "kernel": info["primitiveType"].astype(str),
                           "from": [n for n in info["originalLayersNames"].astype(str).split(",") if n]})
        return result

    def verify_checks(self):
        checks = {}
        want = self.manifest["backend"]["inference_precision"]
        have = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        checks["inference_precision"] = {"passed": have == want,
                                         "detail": f"float layers run in {have} (manifest: {want})"}
        expected = self.manifest["backend"].get("int8_layers", [])
        if expected:
            ran = {}
            for layer in self.layers():
                for name in layer["from"] + [layer["name"]]:
                    ran[name] = layer["precision"]
            bad = [f"{name} ran {_ran(ran, name) or 'nowhere (not in the runtime graph)'}"
                   for name in expected if _ran(ran, name) not in INT8]
            detail = f"{len(expected) - len(bad)}/{len(expected)} layers meant for int8 ran in int8"
            checks["int8_layers"] = {"passed": not bad, "detail": detail + (": " + "; ".join(bad[:5]) if bad else "")}
        return checks


def _ran(ran, name):
    """The precision a model node ran in; OpenVINO's int8 passes may rename it to name/suffix."""
    if name in ran:
        return ran[name]
    return next((p for n, p in ran.items() if n.startswith(name + "/")), None)
