"""run.py's commands: verify, infer, bench and profile this artifact on this device.

Exit codes (errors.ExitCode): 0 ok, 1 a bug in edgec, 2 bad usage or input, 3 the outputs
disagree with the expected ones, 4 a file does not match the manifest (run.py checks that
before importing this), 5 the runtime is not installed.
"""
import argparse
import contextlib
import importlib
import json
import os
import platform
import sys
import time

import numpy as np

from . import compare, interface
from .errors import ExitCode, HarnessError
from .manifest import MANIFEST, RunInfo, VerificationResult, loads, to_json


def load_manifest(folder):
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            text = f.read()
    except OSError as exc:
        raise HarnessError(f"cannot read {MANIFEST} ({exc.strerror}): is this an edgec artifact?") from None
    return loads(text)


@contextlib.contextmanager
def runtime_needed(manifest):
    """Turn the runtime's absence (an ImportError from outside this package) into exit 5, naming what to install."""
    try:
        yield
    except ImportError as exc:
        if exc.name and exc.name.startswith(__package__):
            raise  # our own module is broken: a bug
        raise HarnessError(f"{manifest.runtime.name} is not installed here ({exc}): pip install -r requirements.txt "
                           f"(this artifact expects {manifest.runtime.requirement})", ExitCode.RUNTIME_MISSING) from None


def session_class(manifest):
    """The adapter's Session class (`runtime.session`, "module:Class")."""
    module, name = manifest.runtime.session.split(":")
    with runtime_needed(manifest):
        return getattr(importlib.import_module(f".{module}", __package__), name)


def run_arrays(session, arrays):
    """Outputs for arrays keyed by input name, in any of the forms interface.split takes."""
    runs = interface.split(session.manifest.inputs, arrays)
    return runs.merge([session.run(feed) for feed in runs], session.manifest.outputs), len(runs)


def first_run(folder, manifest):
    """The first of the bundled sample runs: what bench and profile time."""
    inputs = interface.load(os.path.join(folder, manifest.samples.inputs))
    return next(iter(interface.split(manifest.inputs, inputs)))


def verify(args, folder, session):
    manifest = session.manifest
    samples = manifest.samples
    outputs, runs = run_arrays(session, interface.load(os.path.join(folder, samples.inputs)))
    policies = {"reference": manifest.verification.reference, "build_host": manifest.verification.build_host}
    checks = {"reference": compare.compare(interface.real_values(outputs, manifest.outputs),
                                           interface.load(os.path.join(folder, samples.expected)),
                                           policies["reference"])}
    host = os.path.join(folder, samples.host)
    if os.path.exists(host):
        checks["build_host"] = compare.compare(outputs, interface.load(host), policies["build_host"])
    if args.outputs:  # after the checks: at build time this writes the host reference itself
        interface.save(args.outputs, outputs)
    runtime_checks = session.checks()
    for against, results in checks.items():
        for name, check in results.items():
            policy = policies[against].policy(name)
            print(f"{'ok  ' if check.passed else 'FAIL'} {name} vs {against}: {compare.describe(check, policy)}")
    for name, check in runtime_checks.items():
        print(f"{'ok  ' if check.passed else 'FAIL'} {name}: {check.detail}")
    passed = all(c.passed for results in checks.values() for c in results.values()) and \
        all(c.passed for c in runtime_checks.values())
    print(f"verify: {'PASSED' if passed else 'FAILED'} ({runs} runs)")
    result = VerificationResult(platform.machine(), passed, runs, checks, runtime_checks)
    return to_json(result), ExitCode.OK if passed else ExitCode.NOT_FAITHFUL


def infer(args, folder, session):
    outputs, runs = run_arrays(session, interface.load_inputs(args.inputs))
    interface.save(args.outputs, outputs)
    shapes = {k: list(v.shape) for k, v in outputs.items()}
    print(f"wrote {args.outputs}: {shapes} ({runs} runs)")
    return {"outputs": args.outputs, "shapes": shapes, "runs": runs}, ExitCode.OK


def _batch(manifest, feed):
    spec = manifest.inputs[0] if manifest.inputs else None
    return feed[spec.name].shape[spec.batch_axis] if spec is not None and spec.batch_axis is not None else 1


def peak_rss_mb():
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(args, folder, session):
    feed = first_run(folder, session.manifest)
    times = session.latencies(feed, args.warmup, args.iters)
    batch = _batch(session.manifest, feed)
    stats = {
        "mean_ms": float(times.mean()), "p50_ms": float(np.percentile(times, 50)),
        "p90_ms": float(np.percentile(times, 90)), "p99_ms": float(np.percentile(times, 99)),
        "min_ms": float(times.min()), "max_ms": float(times.max()), "std_ms": float(times.std()),
        "throughput_per_s": float(1000.0 * batch / times.mean()),
        "load_time_ms": args.load_time_s * 1000.0, "peak_rss_mb": peak_rss_mb(),
        "warmup": args.warmup, "iters": args.iters, "batch": batch,
    }
    print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))
    throughput = session.throughput(feed, args.iters)
    if throughput is not None:
        stats["throughput_mode"] = throughput
        print("throughput mode: " + "  ".join(f"{k}={v}" for k, v in throughput.items()))
    device = session.device_timing(feed, args.warmup, args.iters, args.cuda_graph)
    if device is not None:
        stats["device"] = device
        print("device: " + "  ".join(f"{k}={v}" for k, v in device.items() if not isinstance(v, dict)))
    return stats, ExitCode.OK


def build_engine(args, folder, session):
    engine = session.build_engine(args.force)
    print("  ".join(f"{k}={v}" for k, v in engine.items() if not isinstance(v, dict)))
    return engine, ExitCode.OK


def profile(args, folder, session):
    layers = session.profile(first_run(folder, session.manifest), args.warmup, args.iters)
    total = sum(layer.ms for layer in layers) or 1.0
    for layer in sorted(layers, key=lambda layer: -layer.ms)[:25]:
        print(f"{layer.ms:9.4f} ms {100 * layer.ms / total:5.1f}%  {layer.op:<24} {layer.name}")
    return {"layers": to_json(layers), "total_ms": total}, ExitCode.OK


COMMANDS = {"verify": verify, "infer": infer, "bench": bench, "profile": profile, "build-engine": build_engine}


def _count(minimum):
    def parse(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value
    return parse


def parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=_count(1), default=None, help="runtime threads (default: the target's)")
    common.add_argument("--json", help="also write the report as JSON to this file")
    common.add_argument("--simulate", action="store_true",
                        help="run the build host's onnxruntime simulation of a runtime it cannot run (TensorRT); "
                             "never a result of the runtime itself")
    top = argparse.ArgumentParser(prog="run.py", description="Verify, infer, bench and profile this edgec artifact.")
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", parents=[common], help="run the bundled samples, compare with expected outputs")
    check.add_argument("--outputs", help="also write the samples' outputs to this .npz")
    run = sub.add_parser("infer", parents=[common], help="run inputs from an .npz keyed by input name")
    run.add_argument("--inputs", required=True)
    run.add_argument("--outputs", required=True)
    for name in ("bench", "profile"):
        p = sub.add_parser(name, parents=[common], help=f"{name} the model on one sample run")
        p.add_argument("--warmup", type=_count(0), default=10)
        p.add_argument("--iters", type=_count(1), default=100 if name == "bench" else 20)
        if name == "bench":
            p.add_argument("--cuda-graph", action="store_true", help="replay the inference as a CUDA graph (TensorRT)")
    engine = sub.add_parser("build-engine", parents=[common],
                            help="build and cache this device's engine (verify and bench build it when missing)")
    engine.add_argument("--force", action="store_true", help="rebuild even when a matching engine is cached")
    return top


def main(folder, argv=None) -> int:
    """Run one command in the artifact `folder`; return the exit code."""
    args = parser().parse_args(argv)
    try:
        manifest = load_manifest(folder)
        cls = session_class(manifest).for_device(args.simulate)
        threads = args.threads or manifest.target.threads
        start = time.perf_counter()
        with runtime_needed(manifest):  # an adapter may import its runtime only when it opens the model
            session = cls(folder, manifest, threads)
        args.load_time_s = time.perf_counter() - start
        version = cls.version()
        if cls.runtime == manifest.runtime.name and version != manifest.runtime.version:
            print(f"warning: built for {manifest.runtime.name} {manifest.runtime.version}, running {version}",
                  file=sys.stderr)
        report, code = COMMANDS[args.command](args, folder, session)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    run = RunInfo(args.command, cls.runtime, version, platform.machine(), platform.python_version(),
                  threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**report, "run": to_json(run)}, f, indent=2, sort_keys=True)
    return code
