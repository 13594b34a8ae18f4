"""Apache TVM adapter for the edgec harness (run.py): the Relax VM runs the exported library.

Needs only the TVM runtime (apache-tvm, apache-tvm-ffi) and numpy. An artifact may hold one
library per CPU architecture (a cross-compiled model and its build-host twin): the one for
this machine is loaded.
"""
import os
import platform
import time
from importlib.metadata import version

import numpy as np

ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def runtime_version():
    return version("apache-tvm")


class Session:
    def __init__(self, folder, manifest, threads):
        if threads:  # read by TVM's thread pool when it starts, so set before importing tvm
            os.environ["TVM_NUM_THREADS"] = str(int(threads))
        import tvm
        from tvm import relax

        self.tvm = tvm
        machine = platform.machine().lower()
        libraries = manifest["backend"]["libraries"]
        name = libraries.get(ARCH_ALIASES.get(machine, machine))
        if name is None:
            raise SystemExit(f"error: this artifact holds code for {sorted(libraries)}, "
                             f"not for this {machine} machine")
        self.library = name
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(os.path.join(folder, name)), tvm.cpu())
        self.main = self.vm["main"]
        self.inputs = [spec["name"] for spec in manifest["inputs"]]
        self.outputs = [spec["name"] for spec in manifest["outputs"]]

    def run(self, feeds):
        args = [self.tvm.runtime.tensor(np.ascontiguousarray(feeds[name])) for name in self.inputs]
        result = self.main(*args)
        values = [result] if hasattr(result, "numpy") else list(result)
        return {name: value.numpy() for name, value in zip(self.outputs, values)}

    def profile(self, feed, warmup, iters):
        """Mean time (ms) of each kernel the VM calls, timed by the VM's instrument hook.

        TVM 0.27's Relax VM has no built-in profiler; the hook brackets every call instruction.
        """
        for _ in range(warmup):
            self.run(feed)
        totals, started = {}, {}

        def instrument(func, symbol, before, ret, *args):
            if before:
                started[symbol] = time.perf_counter()
            else:
                totals[symbol] = totals.get(symbol, 0.0) + time.perf_counter() - started.pop(symbol)
            return 0  # VMInstrumentReturnKind.NO_OP

        self.vm.set_instrument(instrument)
        try:
            for _ in range(iters):
                self.run(feed)
        finally:
            self.vm.set_instrument(None)
        return [{"name": symbol, "op": _kind(symbol), "ms": 1000.0 * seconds / iters}
                for symbol, seconds in totals.items() if not symbol.startswith("vm.builtin.")]

    def verify_checks(self):
        return {"library": {"passed": True, "detail": f"ran {self.library} on {platform.machine()}"}}


def _kind(symbol):
    """The op family of a fused kernel name such as fused_conv2d1_add3_clip."""
    parts = symbol.split("_")
    core = parts[1] if parts[0] == "fused" and len(parts) > 1 else parts[0]
    return core.rstrip("0123456789") or symbol
