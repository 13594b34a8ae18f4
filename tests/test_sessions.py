"""The harness contract: every registered backend's Session passes the same checks on the digits model.

Each backend's artifact is opened the way run.py opens it on a device. Where a runtime cannot
run on this machine, only its refusal path runs: exit 5 and one line that names what to install.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from edgec.backends import REGISTRY
from edgec.package.harness import compare, interface
from edgec.package.harness.commands import load_manifest, session_class
from edgec.package.harness.errors import ExitCode, HarnessError
from edgec.package.harness.manifest import RuntimeCheck
from edgec.package.harness.session import LayerTime, Session

# backend -> (a target that builds it on this machine, the modules its runtime is imported as)
BACKENDS = {
    "onnxruntime": ("onnxruntime", ["onnxruntime"]),
    "openvino": ("openvino-cpu", ["openvino"]),
    "tflite": ("tflite-arm", ["ai_edge_litert", "tflite_runtime"]),
    "tvm": ("tvm-x86", ["tvm"]),
    "tensorrt": ("tensorrt-gpu", ["tensorrt"]),  # no TensorRT here: its fallback to onnxruntime-gpu is absent too
    "tensorrt-dla": ("tensorrt-jetson", ["tensorrt"]),
}
SLOW = {"tvm"}  # compiling the digits model with TVM takes about a minute here


def test_every_registered_backend_is_in_the_contract_test():
    assert set(BACKENDS) == set(REGISTRY)


def runtime_here(modules: list[str]) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in modules)


@pytest.fixture(scope="module", params=[pytest.param(b, marks=pytest.mark.slow) if b in SLOW else b
                                        for b in sorted(BACKENDS)])
def artifact(request, tmp_path_factory, digits_model):
    from edgec import api

    backend = request.param
    out = tmp_path_factory.mktemp(f"contract-{backend}") / "digits"
    built = api.build(str(digits_model), BACKENDS[backend][0], out, precision="fp32")
    assert built.verified, built.manifest.verification.result
    return backend, out


def test_session_contract(artifact):
    backend, folder = artifact
    if not runtime_here(BACKENDS[backend][1]):
        pytest.skip(f"{backend}'s runtime cannot run here: test_missing_runtime_is_exit_5 covers it")
    manifest = load_manifest(folder)
    cls = session_class(manifest)
    assert issubclass(cls, Session) and cls is not Session and cls.runtime == manifest.runtime.name
    assert cls.version() == manifest.runtime.version
    session = cls(str(folder), manifest, 1)

    runs = interface.split(manifest.inputs, interface.load(folder / manifest.samples.inputs))
    results = [session.run(feed) for feed in runs]
    for result in results:
        assert list(result) == [spec.name for spec in manifest.outputs]
        for spec in manifest.outputs:
            assert result[spec.name].dtype == np.dtype(spec.dtype)
            assert all(not isinstance(d, int) or d == n for d, n in zip(spec.shape, result[spec.name].shape))
    outputs = interface.real_values(runs.merge(results, manifest.outputs), manifest.outputs)
    checks = compare.compare(outputs, interface.load(folder / manifest.samples.expected),
                             manifest.verification.reference)
    assert all(check.passed for check in checks.values()), checks

    feed = runs.feeds[0]
    times = session.latencies(feed, warmup=1, iters=3)
    assert len(times) == 3 and (times > 0).all()
    layers = session.profile(feed, warmup=1, iters=2)
    assert layers and all(isinstance(layer, LayerTime) and layer.name and layer.ms >= 0 for layer in layers)
    throughput = session.throughput(feed, 4)
    assert throughput is None or throughput["inferences_per_s"] > 0
    runtime_checks = session.checks()
    assert all(isinstance(c, RuntimeCheck) and c.passed and c.detail for c in runtime_checks.values())

    name = manifest.inputs[0].name
    for bad, words in (({}, "the model's inputs are"),
                       ({name: feed[name].astype(np.float64)}, "is float64"),
                       ({name: np.zeros((1, 1, 9, 9), feed[name].dtype)}, "has shape [1, 1, 9, 9] per run")):
        with pytest.raises(HarnessError) as err:
            session.run(bad)
        assert err.value.code == ExitCode.REFUSED and words in str(err.value)


def test_missing_runtime_is_exit_5(artifact):
    """The artifact's own run.py, in a Python where its runtime does not import."""
    backend, folder = artifact
    hide = "".join(f"sys.modules[{m!r}] = None; " for m in BACKENDS[backend][1])
    code = f"import runpy, sys; {hide}sys.argv = ['run.py', 'verify']; runpy.run_path('run.py', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=300)
    assert proc.returncode == ExitCode.RUNTIME_MISSING, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and "is not installed here" in lines[0] and "pip install -r requirements.txt" in lines[0]
    assert "Traceback" not in proc.stderr
