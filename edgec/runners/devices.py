"""The emulated boards: the facts a Raspberry Pi shows to software, as data.

Runtimes detect the CPU from `/proc/cpuinfo` and the `midr_el1` registers (LiteRT and
onnxruntime segfault on the host's x86 cpuinfo), so each board carries what its kernel prints;
`QEMU_CPU` enforces its instruction set.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgec.errors import DeviceError


@dataclass(frozen=True)
class EmulatedDevice:
    """The facts an emulated board shows to software: data, not code."""

    name: str
    board: str
    qemu_cpu: str
    cpus: int
    implementer: int
    variant: int
    part: int
    revision: int
    features: str
    revision_code: str
    hardware: str | None = None
    bogomips: str = "108.00"

    @property
    def midr_el1(self) -> str:
        """The Main ID Register, as the kernel shows it: implementer, variant, architecture (0xf), part, revision."""
        return f"0x{self.implementer << 24 | self.variant << 20 | 0xF << 16 | self.part << 4 | self.revision:016x}"

    def cpuinfo(self) -> str:
        """A `/proc/cpuinfo` as the board's Linux kernel prints it (one block per CPU)."""
        blocks = []
        for cpu in range(self.cpus):
            blocks.append(
                f"processor\t: {cpu}\n"
                f"BogoMIPS\t: {self.bogomips}\n"
                f"Features\t: {self.features}\n"
                f"CPU implementer\t: 0x{self.implementer:02x}\n"
                "CPU architecture: 8\n"
                f"CPU variant\t: 0x{self.variant:x}\n"
                f"CPU part\t: 0x{self.part:03x}\n"
                f"CPU revision\t: {self.revision}\n"
            )
        tail = ""
        if self.hardware:
            tail += f"Hardware\t: {self.hardware}\n"
        tail += f"Revision\t: {self.revision_code}\nSerial\t\t: 00000000edgec000\nModel\t\t: {self.board}\n"
        return "\n".join(blocks) + "\n" + tail

    def write_files(self, sysroot: Path) -> None:
        """The files a Pi's kernel shows and runtimes read to detect the CPU and the board."""
        (sysroot / "proc").mkdir(exist_ok=True)
        (sysroot / "proc/cpuinfo").write_text(self.cpuinfo())
        cpu_dir = sysroot / "sys/devices/system/cpu"
        span = f"0-{self.cpus - 1}\n"
        for name in ("possible", "present", "online"):
            (cpu_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (cpu_dir / name).write_text(span)
        for cpu in range(self.cpus):
            regs = cpu_dir / f"cpu{cpu}/regs/identification"
            regs.mkdir(parents=True, exist_ok=True)
            (regs / "midr_el1").write_text(self.midr_el1 + "\n")
            (regs / "revidr_el1").write_text("0x0000000000000000\n")
        for model in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
            (sysroot / model).parent.mkdir(parents=True, exist_ok=True)
            (sysroot / model).write_bytes(self.board.encode() + b"\0")


def _catalogue() -> dict[str, EmulatedDevice]:
    """The boards in devices.toml (beside this module, so it ships in the wheel), by name."""
    tables = tomllib.loads(resources.files(__package__).joinpath("devices.toml").read_text())
    return {name: EmulatedDevice(name=name, **facts) for name, facts in tables.items()}


DEVICES = _catalogue()


def device(name: str) -> EmulatedDevice:
    try:
        return DEVICES[name]
    except KeyError:
        raise DeviceError(
            f"unknown emulated device '{name}': known ones are {', '.join(sorted(DEVICES))}"
        ) from None
