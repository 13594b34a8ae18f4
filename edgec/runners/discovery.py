"""Device discovery: what a device is (`edgec device probe`), which target suits it, and whether an
artifact's instruction-set needs are met there before anything runs.

The facts come from `device_probe.py`, run by the device's own Python (locally, under qemu, or
over ssh), so they describe the CPU the harness will really run on.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgec import system
from edgec.errors import DeviceError, UnsupportedError
from edgec.package.harness.manifest import Target

logger = logging.getLogger(__name__)

PROBE_SOURCE = (Path(__file__).parent / "device_probe.py").read_text()

# Each ISA feature edgec reports, by the architecture that has it.
FEATURES_BY_ARCH = {
    "aarch64": ("neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2"),
    "x86_64": ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_fp16", "avx_vnni", "amx_int8", "amx_bf16"),
}


@dataclass(frozen=True)
class DeviceProfile:
    """What `edgec device probe` reports about one device."""

    device: str
    arch: str
    cpu: str
    features: list[str]
    cores: int
    memory_bytes: int | None
    os: str
    python: str
    runtimes: dict[str, str] = field(default_factory=dict)
    venv: bool = False  # the device's Python can make a venv (has venv and ensurepip)
    emulated: bool = False

    @property
    def suggested_target(self) -> str:
        """The bundled target that fits this CPU: LiteRT on Arm, OpenVINO on Intel, onnxruntime elsewhere."""
        if self.arch == "aarch64":
            return "tflite-arm"
        if self.arch == "x86_64" and "intel" in self.cpu.lower():
            return "openvino-cpu"
        return "onnxruntime"

    def as_json(self) -> dict:
        return dict(dataclasses.asdict(self), suggested_target=self.suggested_target,
                    missing_features=sorted(set(FEATURES_BY_ARCH.get(self.arch, ())) - set(self.features)))


def read_profile(device: str, proc: subprocess.CompletedProcess, emulated: bool) -> DeviceProfile:
    """The probe's JSON line as a DeviceProfile; a probe that did not run is the device's fault."""
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        return DeviceProfile(device=device, emulated=emulated, **data)
    except (ValueError, IndexError, TypeError):
        raise DeviceError(f"cannot read what {device} is: its Python failed ({system.output_reason(proc)})") from None


def check_artifact(profile: DeviceProfile, target: Target, precision: str) -> list[str]:
    """Refuse an artifact whose code compiled for this architecture needs a feature the device lacks;
    return warnings for the features whose absence only makes it slower."""
    if target.requires and profile.arch == target.arch:  # other CPUs run the artifact's build-host twin, if any
        missing = [f for f in target.requires if f not in profile.features]
        if missing:
            from edgec.targets import available

            fitting = [t.name for t in available() if t.backend == target.backend and t.arch == profile.arch
                       and set(t.requires) <= set(profile.features)] or [profile.suggested_target]
            raise UnsupportedError(
                f"{target.name} code uses {', '.join(missing)}, which {profile.device} ({profile.cpu}) lacks: "
                f"it would stop with an illegal instruction; build for {' or '.join(fitting)}")
    known = FEATURES_BY_ARCH.get(profile.arch, ())
    slower = [f for f in target.faster_with.get(precision, []) if f in known and f not in profile.features]
    return [f"{profile.device} lacks {', '.join(slower)}: {target.name} {precision} runs, but slower than on a "
            "CPU that has it"] if slower else []
