"""`Session`: one model loaded by one runtime on this device, the base of every adapter (rt_*.py).

As in Polygraphy's BaseRunner, the public methods hold the shared behaviour (input checks,
warm-up, timing, averaging) and call small hooks that each runtime implements:

    _open()              load the model (called once, by __init__)
    _run(feed)           one inference: outputs keyed by output name
    _layer_timer(feed)   a LayerTimer, for runtimes that can time layers
    _throughput(...)     several requests in flight, for runtimes that can
    _device_timing(...)  the accelerator's own times (compute, copies), for runtimes that measure them
    _checks()            the runtime's own verify checks

A runtime with more than one way to run (TensorRT: its own API or onnxruntime's provider) picks
its class for this device in `for_device`; one that builds an engine on the device overrides
`build_engine`.
"""
import contextlib
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import interface
from .errors import HarnessError, first_line
from .manifest import Manifest, RuntimeCheck

LayerKey = Tuple[str, str, str]  # (layer name, operator, kernel)


@dataclass
class LayerTime:
    """A layer's mean time per inference."""

    name: str
    op: str
    ms: float
    kernel: str = ""


class LayerTimer:
    """Times the layers of repeated inferences; `Session.profile` drives it (warm-up, then timed runs)."""

    def run(self) -> None:
        """One inference, with its layers timed."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the times so far (those of the warm-up)."""
        raise NotImplementedError

    def totals(self) -> Dict[LayerKey, float]:
        """Milliseconds per layer, summed over the runs since the last reset."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what timing needed."""


class Session:
    """One model on one runtime. Subclasses set `runtime` and implement the hooks."""

    runtime = ""  # the pip distribution whose version the artifact expects
    runtime_errors: Tuple[type, ...] = ()  # what the runtime raises when it cannot load or run a model

    def __init__(self, folder: str, manifest: Manifest, threads: Optional[int]):
        self.folder, self.manifest, self.threads = folder, manifest, threads
        with self._refusals("load"):
            self._open()

    @contextlib.contextmanager
    def _refusals(self, what: str):
        """The runtime refusing the model is a one-line refusal (exit 2), not a crash of the harness. Runtimes
        put the specific reason last (OpenVINO: "Exception from ...cpp:189:" first, "Port ... not found." last)."""
        try:
            yield
        except self.runtime_errors as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise HarnessError(f"{self.runtime} could not {what} the model: {lines[-1] if lines else first_line(exc)}") \
                from None

    @classmethod
    def for_device(cls, simulate: bool) -> type:
        """The class that runs the model here. `simulate` asks for the build host's simulation of a runtime
        it cannot run; a runtime that runs on the build host has none."""
        if simulate:
            raise HarnessError(f"{cls.runtime} runs on the build host itself: --simulate is only for runtimes "
                               "the build host cannot run")
        return cls

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return version(cls.runtime)

    # -- what run.py calls ---------------------------------------------------------------------

    def check_feed(self, feed: Dict[str, np.ndarray]) -> None:
        """Refuse a feed whose names, dtypes or static dimensions are not the model's inputs."""
        interface.check_feed(self.manifest.inputs, feed)

    def run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One checked inference: the model's outputs, in the manifest's order."""
        self.check_feed(feed)
        with self._refusals("run"):
            outputs = self._run(feed)
        return {spec.name: outputs[spec.name] for spec in self.manifest.outputs}

    def latencies(self, feed: Dict[str, np.ndarray], warmup: int, iters: int) -> np.ndarray:
        """Milliseconds of each of `iters` inferences after `warmup` untimed ones."""
        self.check_feed(feed)
        for _ in range(warmup):
            self._run(feed)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            self._run(feed)
            times.append((time.perf_counter() - start) * 1000.0)
        return np.array(times)

    def profile(self, feed: Dict[str, np.ndarray], warmup: int, iters: int) -> List[LayerTime]:
        """Each layer's mean time over `iters` inferences, after `warmup` that are not counted."""
        self.check_feed(feed)
        timer = self._layer_timer(feed)
        try:
            for _ in range(warmup):
                timer.run()
            timer.reset()
            for _ in range(iters):
                timer.run()
            totals = timer.totals()
        finally:
            timer.close()
        return [LayerTime(name, op, ms / iters, kernel) for (name, op, kernel), ms in totals.items()]

    def throughput(self, feed: Dict[str, np.ndarray], iters: int) -> Optional[dict]:
        """Inferences per second with several requests in flight, where the runtime can; else None."""
        self.check_feed(feed)
        return self._throughput(feed, iters)

    def device_timing(self, feed: Dict[str, np.ndarray], warmup: int, iters: int, cuda_graph: bool) -> Optional[dict]:
        """The accelerator's own times (trtexec's GPU compute, host-to-device, device-to-host) where the runtime
        measures them; else None."""
        self.check_feed(feed)
        timing = self._device_timing(feed, warmup, iters, cuda_graph)
        if timing is None and cuda_graph:
            raise HarnessError(f"{self.runtime} runs no CUDA graphs: --cuda-graph is for TensorRT engines")
        return timing

    def build_engine(self, force: bool) -> dict:
        """Build the device's engine (again, with `force`) and describe it; for runtimes that keep one."""
        raise HarnessError(f"{self.runtime} builds no engine ahead of time: there is nothing to build")

    def checks(self) -> Dict[str, RuntimeCheck]:
        """The runtime's own checks, reported by verify beside the output comparisons."""
        return self._checks()

    # -- hooks -------------------------------------------------------------------------------

    def _open(self) -> None:
        raise NotImplementedError

    def _run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def _layer_timer(self, feed: Dict[str, np.ndarray]) -> LayerTimer:
        raise HarnessError(f"{self.runtime} offers no per-layer profile")

    def _throughput(self, feed: Dict[str, np.ndarray], iters: int) -> Optional[dict]:
        return None

    def _device_timing(self, feed: Dict[str, np.ndarray], warmup: int, iters: int, cuda_graph: bool) -> Optional[dict]:
        return None

    def _checks(self) -> Dict[str, RuntimeCheck]:
        return {}
