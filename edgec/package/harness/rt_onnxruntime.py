"""onnxruntime adapter for the edgec harness (run.py)."""
import json
import os
import tempfile

import onnxruntime as ort


def runtime_version():
    return ort.__version__


class Session:
    def __init__(self, folder, manifest, threads, profiling=False):
        self.folder, self.manifest, self.threads = folder, manifest, threads
        self.session = self._open(profiling)

    def _open(self, profiling):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        if profiling:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "edgec")
        model = os.path.join(self.folder, self.manifest["model"]["main"])
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run(self, feeds):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds)))

    def profile(self, feed, warmup, iters):
        """Per-node mean time (ms) from onnxruntime's profiler, over `iters` runs."""
        session = self._open(profiling=True)
        for _ in range(warmup + iters):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
        totals = {}
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                key = (event["name"][: -len("_kernel_time")], event["args"]["op_name"])
                totals[key] = totals.get(key, 0.0) + event["dur"] / 1000.0
        runs = warmup + iters
        return [{"name": name, "op": op, "ms": ms / runs} for (name, op), ms in totals.items()]
