"""What a device is, as its own Python sees it: printed as one JSON object on stdout.

This file is sent to the device's Python and run there (`python3 - < device_probe.py`), so it
uses only the standard library of any Python 3. Instruction-set features come from the running
CPU, never from a file: on Arm from the kernel's HWCAP/HWCAP2 words (`getauxval`; under qemu
they are the emulated CPU's), on x86 from CPUID and XGETBV run as a few bytes of machine code.
"""
import ctypes
import importlib.util
import json
import mmap
import os
import platform
import sys

AT_HWCAP, AT_HWCAP2 = 16, 26
# Linux arch/arm64/include/uapi/asm/hwcap.h: (word, bit) of each feature edgec reports.
ARM_FEATURES = {
    "neon": (AT_HWCAP, 1),  # HWCAP_ASIMD
    "fp16": (AT_HWCAP, 10),  # HWCAP_ASIMDHP: half-precision vector arithmetic
    "dotprod": (AT_HWCAP, 20),  # HWCAP_ASIMDDP
    "sve": (AT_HWCAP, 22),
    "sve2": (AT_HWCAP2, 1),
    "i8mm": (AT_HWCAP2, 13),
    "bf16": (AT_HWCAP2, 14),
}
# (leaf, subleaf, register, bit) of CPUID, and the XCR0 state bits the OS must enable for it.
X86_FEATURES = {
    "avx2": (7, 0, "ebx", 5, 0b110),
    "fma": (1, 0, "ecx", 12, 0b110),
    "avx512f": (7, 0, "ebx", 16, 0b11100110),
    "avx512_vnni": (7, 0, "ecx", 11, 0b11100110),
    "avx512_fp16": (7, 0, "edx", 23, 0b11100110),
    "avx_vnni": (7, 1, "eax", 4, 0b110),
    "amx_int8": (7, 0, "edx", 25, 0b11 << 17),
    "amx_bf16": (7, 0, "edx", 22, 0b11 << 17),
}
# void cpuid(uint32 leaf, uint32 subleaf, uint32 out[4]) and uint64 xgetbv0(void), System V ABI.
CPUID_CODE = bytes.fromhex("534989d089f889f10fa241890041895804418948084189500c5bc3")
XGETBV_CODE = bytes.fromhex("31c90f01d048c1e2204809d0c3")
# Arm's part numbers (the `CPU part` line) of common board cores.
ARM_CORES = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd08": "Cortex-A72",
             "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78",
             "0xd40": "Neoverse-V1", "0xd49": "Neoverse-N2"}
RUNTIMES = {
    "numpy": "numpy",
    "ai-edge-litert": "ai_edge_litert",
    "tflite-runtime": "tflite_runtime",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "apache-tvm": "tvm",
}


def arm_features():
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    words = {AT_HWCAP: libc.getauxval(AT_HWCAP), AT_HWCAP2: libc.getauxval(AT_HWCAP2)}
    return sorted(name for name, (word, bit) in ARM_FEATURES.items() if words[word] >> bit & 1)


def _machine_code(code, restype, argtypes):
    """A function made of `code`, in a page that is executable (kept alive with the function)."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    function = ctypes.CFUNCTYPE(restype, *argtypes)(address)
    function.page = page
    return function


def x86_features():
    cpuid = _machine_code(CPUID_CODE, None, [ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)])

    def registers(leaf, subleaf):
        out = (ctypes.c_uint32 * 4)()
        cpuid(leaf, subleaf, out)
        return dict(zip(("eax", "ebx", "ecx", "edx"), out))

    max_leaf = registers(0, 0)["eax"]
    osxsave = registers(1, 0)["ecx"] >> 27 & 1
    xcr0 = _machine_code(XGETBV_CODE, ctypes.c_uint64, [])() if osxsave else 0
    found = []
    for name, (leaf, subleaf, register, bit, state) in X86_FEATURES.items():
        if leaf <= max_leaf and registers(leaf, subleaf)[register] >> bit & 1 and xcr0 & state == state:
            found.append(name)
    return sorted(found)


def cpu_model():
    """The CPU's name: x86's model name, else the Arm core named by its part number, and the board."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" in fields:
        return fields["model name"]
    core = ARM_CORES.get(fields.get("CPU part", "").lower(), fields.get("CPU part"))
    names = [name for name in (core, fields.get("Model") or fields.get("Hardware")) if name]
    return ", ".join(names) or platform.processor() or platform.machine()


def memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def os_name():
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return fields.get("PRETTY_NAME", "").strip('"') or platform.system()
    except OSError:
        return f"{platform.system()} {platform.release()}"


def runtimes():
    from importlib import metadata

    found = {}
    for distribution, module in RUNTIMES.items():
        if importlib.util.find_spec(module) is not None:
            try:
                found[distribution] = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                found[distribution] = "unknown"
    return found


def main():
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        machine, features = "aarch64", arm_features()
    elif machine in ("x86_64", "amd64"):
        machine, features = "x86_64", x86_features()
    else:
        features = []
    print(json.dumps({
        "arch": machine,
        "cpu": cpu_model(),
        "features": features,
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "os": os_name(),
        "python": platform.python_version(),
        "runtimes": runtimes(),
        "venv": importlib.util.find_spec("ensurepip") is not None and importlib.util.find_spec("venv") is not None,
    }))


main()
