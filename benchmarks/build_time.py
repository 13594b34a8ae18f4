"""The MobileNetV2 int8 tflite-arm build's time, choices included (issue 14's bar: under 10 s), in interleaved
rounds against an earlier commit, so that the machine's load falls on both alike. Each build is a fresh
`edgec build` process, as a user runs it, with the default options (calibration method and bias correction
measured, host verification on).

    python benchmarks/build_time.py [--rounds 5] [--against 5ab4eca]

Per build: the time the CLI prints (the manifest's build.seconds), the process's wall time, its CPU time (user
and system, its children's included), its peak memory and page faults, the load average, and the model file's
SHA-256 (a speed-up must not change the bytes). Writes benchmarks/results/build_time.json and .md.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import date
from pathlib import Path

from common import MOBILENET, ROOT, cpu_name, load_average, write_results

TARGET = "tflite-arm"
# the edgec CLI from the source tree argv[1], not from the editable install that points at this checkout
RUNNER = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv.pop(1))
from edgec.cli import main
sys.argv[0] = "edgec"
main()
"""


def source_of(revision: str, folder: Path) -> Path:
    """The edgec package of `revision`, unpacked under `folder`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "edgec"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def one_build(source: Path, out: Path) -> dict:
    """One `edgec build` process of the source tree `source`, measured."""
    command = [sys.executable, "-c", RUNNER, str(source), "build", "--target", TARGET, "--precision", "int8",
               str(MOBILENET / "mobilenet_v2.onnx"), "--calibration", str(MOBILENET / "calibration.npz"),
               "-o", str(out)]
    load = load_average()
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=out.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"edgec build from {source} exited {process.returncode}")
    manifest = json.loads((out / "edgec.json").read_text())
    return {"build_s": round(manifest["build"]["seconds"], 2), "wall_s": round(wall, 2),
            "user_s": round(usage.ru_utime, 2), "system_s": round(usage.ru_stime, 2), "peak_gb": round(usage.ru_maxrss / 2**20, 2),
            "page_faults_k": usage.ru_minflt // 1000, "load_average": load,
            "sha256": hashlib.sha256((out / "model.tflite").read_bytes()).hexdigest()}


def summary(builds: list[dict]) -> dict:
    return {key: {"median": round(statistics.median(b[key] for b in builds), 2),
                  "min": min(b[key] for b in builds), "max": max(b[key] for b in builds)}
            for key in ("build_s", "wall_s", "user_s", "system_s", "peak_gb", "page_faults_k")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", help="an earlier commit to interleave with this checkout's edgec")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"this checkout": ROOT}
        if args.against:
            sources[args.against] = source_of(args.against, Path(tmp) / "against")
        builds: dict[str, list[dict]] = {name: [] for name in sources}
        for round_ in range(args.rounds):
            for name, source in sources.items():
                out = Path(tmp) / f"out-{round_}-{len(builds[name])}-{name.replace(' ', '-')}"
                builds[name].append(one_build(source, out))
                print(f"round {round_ + 1} {name}: {builds[name][-1]}", flush=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    result = {"date": date.today().isoformat(), "cpu": cpu_name(), "cores": os.cpu_count(), "head": head,
              "rounds": args.rounds, "builds": builds, "summary": {name: summary(b) for name, b in builds.items()}}
    lines = ["# MobileNetV2 int8 tflite-arm build time", "",
             f"`python benchmarks/build_time.py --rounds {args.rounds}"
             + (f" --against {args.against}`" if args.against else "`")
             + f", {result['date']}, {result['cpu']}, {result['cores']} cores, this checkout at {head}. Each build a "
             "fresh `edgec build` process with the default options (choices measured, host verification on), "
             "the variants interleaved round by round. Build: the time the CLI prints; CPU: user + system, "
             "children included. The bar (issue 14): under 10 s.", "",
             "| edgec | build s (median, range) | wall s | CPU s (user + system) | peak GB | page faults "
             "| model.tflite |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, runs in builds.items():
        s = result["summary"][name]
        cpu = statistics.median(b["user_s"] + b["system_s"] for b in runs)
        hashes = sorted({b["sha256"][:12] for b in runs})
        lines.append(f"| {name} | **{s['build_s']['median']}** ({s['build_s']['min']}-{s['build_s']['max']}) | "
                     f"{s['wall_s']['median']} | {cpu:.1f} ({s['user_s']['median']} + {s['system_s']['median']}) | "
                     f"{s['peak_gb']['median']} | {s['page_faults_k']['median']:.0f}k | {', '.join(hashes)} |")
    lines += ["", "Load average at each build's start: " + ", ".join(
        f"{name} " + " ".join(b["load_average"] for b in runs) for name, runs in builds.items()) + ".", ""]
    write_results("build_time", result, "\n".join(lines))


if __name__ == "__main__":
    main()
