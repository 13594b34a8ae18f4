"""onnxruntime adapter for the edgec harness: the CPU execution provider, graph optimizations on."""
import json
import os
import shutil
import tempfile

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as failure

from .session import LayerTimer, Session


class OnnxRuntimeSession(Session):
    runtime = "onnxruntime"
    runtime_errors = (failure.Fail, failure.InvalidArgument, failure.RuntimeException, failure.NotImplemented,
                      failure.InvalidGraph)

    def _open(self):
        self.session = self._create()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _create(self, profile_prefix=None):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        model = os.path.join(self.folder, self.manifest.model.main)
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def _run(self, feed):
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def _layer_timer(self, feed):
        folder = tempfile.mkdtemp(prefix="edgec-ort-profile-")
        return ProfilerTimer(self._create(os.path.join(folder, "edgec")), feed, folder)


class ProfilerTimer(LayerTimer):
    """onnxruntime's profiler records every run from the start: the warm-up runs' kernel events are
    the ones before the first timed `model_run`."""

    def __init__(self, session, feed, folder):
        self.session, self.feed, self.folder = session, feed, folder
        self.runs = self.untimed = 0

    def run(self):
        self.session.run(None, self.feed)
        self.runs += 1

    def reset(self):
        self.untimed = self.runs

    def totals(self):
        with open(self.session.end_profiling()) as f:
            events = json.load(f)
        starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
        first = starts[self.untimed] if self.untimed < len(starts) else float("inf")
        totals = {}
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= first:
                key = (event["name"][: -len("_kernel_time")], event["args"]["op_name"], "")
                totals[key] = totals.get(key, 0.0) + event["dur"] / 1000.0
        return totals

    def close(self):
        shutil.rmtree(self.folder, ignore_errors=True)
