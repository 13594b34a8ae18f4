"""Apache TVM adapter for the edgec harness: the Relax VM runs the exported library.

Needs only the TVM runtime (apache-tvm, apache-tvm-ffi) and numpy. An artifact may hold one
library per CPU architecture (a cross-compiled model and its build-host twin): the one for
this machine is loaded.
"""
import os
import platform
import time

import numpy as np

from .errors import HarnessError
from .manifest import RuntimeCheck
from .session import LayerTimer, Session

ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


class TVMSession(Session):
    runtime = "apache-tvm"
    runtime_errors = (RuntimeError,)  # tvm.error.TVMError and its kinds derive from it

    def _open(self):
        if self.threads:  # read by TVM's thread pool when it starts, so set before importing tvm
            os.environ["TVM_NUM_THREADS"] = str(int(self.threads))
        import tvm
        from tvm import relax

        self.tvm = tvm
        machine = platform.machine().lower()
        libraries = self.manifest.backend.libraries
        name = libraries.get(ARCH_ALIASES.get(machine, machine))
        if name is None:
            raise HarnessError(f"this artifact holds code for {sorted(libraries)}, not for this {machine} machine")
        self.library = name
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(os.path.join(self.folder, name)), tvm.cpu())
        self.main = self.vm["main"]

    def _run(self, feed):
        args = [self.tvm.runtime.tensor(np.asarray(feed[spec.name], order="C")) for spec in self.manifest.inputs]
        result = self.main(*args)
        values = [result] if hasattr(result, "numpy") else list(result)
        return {spec.name: value.numpy() for spec, value in zip(self.manifest.outputs, values)}

    def _layer_timer(self, feed):
        return KernelTimer(self, feed)

    def _checks(self):
        return {"library": RuntimeCheck(True, f"ran {self.library} on {platform.machine()}")}


class KernelTimer(LayerTimer):
    """Times each kernel the VM calls with the VM's instrument hook, which brackets every call
    instruction (TVM 0.27's Relax VM has no built-in profiler)."""

    def __init__(self, session, feed):
        self.session, self.feed = session, feed
        self.sums, self.started = {}, {}
        session.vm.set_instrument(self._instrument)

    def _instrument(self, func, symbol, before, ret, *args):
        if before:
            self.started[symbol] = time.perf_counter()
        else:
            self.sums[symbol] = self.sums.get(symbol, 0.0) + time.perf_counter() - self.started.pop(symbol)
        return 0  # VMInstrumentReturnKind.NO_OP

    def run(self):
        self.session._run(self.feed)

    def reset(self):
        self.sums.clear()

    def totals(self):
        return {(symbol, _kind(symbol), ""): 1000.0 * seconds for symbol, seconds in self.sums.items()
                if not symbol.startswith("vm.builtin.")}

    def close(self):
        self.session.vm.set_instrument(None)


def _kind(symbol):
    """The op family of a fused kernel name such as fused_conv2d1_add3_clip."""
    parts = symbol.split("_")
    core = parts[1] if parts[0] == "fused" and len(parts) > 1 else parts[0]
    return core.rstrip("0123456789") or symbol
