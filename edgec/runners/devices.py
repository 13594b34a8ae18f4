"""The emulated boards: the facts a Raspberry Pi shows to software, as data.

Runtimes detect the CPU from `/proc/cpuinfo` and the `midr_el1` registers (LiteRT and
onnxruntime segfault on the host's x86 cpuinfo), so each board carries what its kernel prints;
`QEMU_CPU` enforces its instruction set.
"""
from __future__ import annotations

from dataclasses import dataclass
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
    midr_el1: str
    revision_code: str
    hardware: str | None = None
    bogomips: str = "108.00"

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


DEVICES: dict[str, EmulatedDevice] = {
    "rpi4-emulated": EmulatedDevice(
        name="rpi4-emulated",
        board="Raspberry Pi 4 Model B Rev 1.4",
        qemu_cpu="cortex-a72",
        cpus=4,
        implementer=0x41,
        variant=0x0,
        part=0xD08,
        revision=3,
        features="fp asimd evtstrm crc32 cpuid",
        midr_el1="0x00000000410fd083",
        revision_code="d03114",
        hardware="BCM2835",
    ),
    "rpi5-emulated": EmulatedDevice(
        name="rpi5-emulated",
        board="Raspberry Pi 5 Model B Rev 1.0",
        qemu_cpu="cortex-a76",
        cpus=4,
        implementer=0x41,
        variant=0x4,
        part=0xD0B,
        revision=1,
        features=(
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
            "asimdrdm lrcpc dcpop asimddp"
        ),
        midr_el1="0x00000000414fd0b1",
        revision_code="d04170",
    ),
}


def device(name: str) -> EmulatedDevice:
    try:
        return DEVICES[name]
    except KeyError:
        raise DeviceError(
            f"unknown emulated device '{name}': known ones are {', '.join(sorted(DEVICES))}"
        ) from None
