"""Turn a target TOML into a TVM LLVM target, and make sure its cross toolchain exists.

TVM 0.27 rejects `mcpu: native`, so `cpu = "detect"` is resolved here to the build machine's
LLVM CPU name. Targets whose `arch` is not the build machine's are cross-compiled with the
GNU toolchain for that arch, installed with apt-get on first use when we are allowed to
(system.apt_install).
"""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass

from edgec import system
from edgec.errors import UnsupportedError
from edgec.targets import Target

# arch in the TOML -> (LLVM triple, GNU cross compiler, Debian package that provides it)
CROSS = {"aarch64": ("aarch64-linux-gnu", "aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")}
# CPU features that make fp16 arithmetic native (otherwise LLVM emulates it through fp32)
FP16_FEATURES = {"x86_64": "avx512fp16", "aarch64": "fullfp16"}


@dataclass(frozen=True)
class LLVMTarget:
    """A resolved TVM target: its JSON dict, where it runs, and how to link for it."""

    config: dict
    arch: str
    cpu: str
    cpu_detected: bool
    compiler: str | None  # cross compiler; None for the build machine's own arch

    @property
    def cross(self) -> bool:
        return self.compiler is not None

    @property
    def key(self) -> str:
        """A short hash naming this target, for the default tuning database folder."""
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:16]

    def tvm(self):
        import tvm

        return tvm.target.Target(self.config)

    def has_native_fp16(self) -> bool:
        from tvm.target import codegen

        with self.tvm():
            return bool(codegen.llvm_cpu_has_features([FP16_FEATURES[self.arch]]))


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def resolve(target: Target) -> LLVMTarget:
    """The TVM target for a TOML target; the CPU name is detected when the TOML says "detect"."""
    from tvm.target import codegen

    arch = host_arch() if target.arch in ("any", "native", "") else target.arch
    cpu, detected = target.cpu, False
    if cpu in ("", "detect"):
        if arch != host_arch():
            raise UnsupportedError(
                f"target {target.name}: cannot detect the CPU of a {arch} device from this {host_arch()} "
                "machine: set `cpu` in the target TOML (e.g. cortex-a72)"
            )
        cpu, detected = codegen.llvm_get_system_cpu(), True
    config = {"kind": "llvm", "mcpu": cpu, "num-cores": int(target.threads)}
    compiler = None
    if arch != host_arch():
        if arch not in CROSS:
            raise UnsupportedError(
                f"target {target.name}: edgec cannot cross-compile TVM code for arch '{arch}' "
                f"(it can for {', '.join(sorted(CROSS))})"
            )
        triple, compiler, _package = CROSS[arch]
        config["mtriple"] = triple
        ensure_cross_compiler(arch)
    return LLVMTarget(config, arch, cpu, detected, compiler)


def ensure_cross_compiler(arch: str) -> str:
    """Find the GNU cross compiler for `arch`, installing it with apt when missing and allowed."""
    _triple, compiler, package = CROSS[arch]
    return system.apt_install(package, compiler)
