"""edgec artifact harness: verify, infer, bench and profile this model on this device.

It needs only numpy and the runtime named in requirements.txt. The runtime-specific part
lives in edgec_runtime.py beside this file; everything here is shared by every target.
Exit codes: 0 ok, 1 verification failed, 2 bad usage or input, 3 model files do not match
the manifest, 4 the runtime is missing.
"""
import argparse
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(message, code=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def load_manifest():
    with open(os.path.join(HERE, "edgec.json")) as f:
        return json.load(f)


def check_model_files(manifest):
    """Refuse model files that are not the ones the manifest describes."""
    for name, info in manifest["model"]["files"].items():
        path = os.path.join(HERE, name)
        if not os.path.exists(path):
            fail(f"model file {name} is missing from the artifact", 3)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != info["sha256"]:
            fail(f"model file {name} does not match the manifest's sha256: rebuild the artifact", 3)


def open_session(manifest, threads):
    sys.path.insert(0, HERE)
    try:
        import edgec_runtime
    except ImportError as exc:
        fail(f"the runtime is not installed ({exc}): pip install -r requirements.txt "
             f"(this artifact expects {manifest['runtime']['requirement']})", 4)
    have = edgec_runtime.runtime_version()
    want = manifest["runtime"]["version"]
    if have != want:
        print(f"warning: built for {manifest['runtime']['name']} {want}, running {have}", file=sys.stderr)
    start = time.perf_counter()
    session = edgec_runtime.Session(HERE, manifest, threads)
    return session, time.perf_counter() - start, have


def load_npz(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def split_batches(manifest, arrays):
    """Yield feeds that fit the model's batch size, from arrays stacked along axis 0."""
    specs = {s["name"]: s for s in manifest["inputs"]}
    missing = set(specs) - set(arrays)
    if missing:
        fail(f"inputs missing: {sorted(missing)}; expected {sorted(specs)}")
    count = len(next(iter(arrays.values())))
    batch = {name: s["shape"][0] if isinstance(s["shape"][0], int) else count for name, s in specs.items()}
    step = min(batch.values())
    if count % step:
        fail(f"{count} samples do not split into batches of {step}")
    for i in range(0, count, step):
        feed = {}
        for name, spec in specs.items():
            value = arrays[name][i:i + step]
            expected = [d for d in spec["shape"][1:]]
            if any(isinstance(d, int) and d != v for d, v in zip(expected, value.shape[1:])) or \
                    value.ndim != len(spec["shape"]):
                fail(f"input '{name}' has shape {list(value.shape)}, the model expects {spec['shape']}")
            feed[name] = value.astype(spec["dtype"], copy=False)
        yield feed


def run_all(session, manifest, arrays):
    results = {}
    for feed in split_batches(manifest, arrays):
        for name, value in session.run(feed).items():
            results.setdefault(name, []).append(value)
    return {name: np.concatenate(parts) for name, parts in results.items()}


def dequantize(manifest, outputs):
    """Integer outputs (--io-dtype int8) back to real values, with the manifest's scale and zero point."""
    result = dict(outputs)
    for spec in manifest["outputs"]:
        q = spec.get("quantization")
        if q and spec["name"] in result:
            result[spec["name"]] = (result[spec["name"]].astype(np.float64) - q["zero_point"]) * q["scale"]
    return result


def compare(outputs, reference, tolerance):
    """Per-output agreement: max abs error, error relative to the reference range, top-1."""
    report = {}
    for name, ref in reference.items():
        got = outputs[name].astype(np.float64)
        ref = ref.astype(np.float64)
        err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        span = float(ref.max() - ref.min()) if ref.size else 0.0
        rel = err / max(span, 1e-12)
        entry = {"max_abs_err": err, "rel_err": rel, "tolerance": tolerance,
                 "passed": bool(rel <= tolerance or err <= 1e-6)}
        if ref.ndim == 2 and ref.shape[1] > 1:
            entry["top1_agreement"] = float(np.mean(got.argmax(1) == ref.argmax(1)))
        report[name] = entry
    return report


def cmd_verify(args, manifest, session, info):
    samples = manifest["samples"]
    inputs = load_npz(os.path.join(HERE, samples["inputs"]))
    outputs = run_all(session, manifest, inputs)
    checks = {"reference": compare(dequantize(manifest, outputs), load_npz(os.path.join(HERE, samples["expected"])),
                                   samples["tolerance"])}
    if samples.get("host") and os.path.exists(os.path.join(HERE, samples["host"])):
        checks["build_host"] = compare(outputs, load_npz(os.path.join(HERE, samples["host"])),
                                       samples["host_tolerance"])
    if args.outputs:  # after the checks: at build time this writes the host reference itself
        np.savez(args.outputs, **outputs)
    passed = all(e["passed"] for c in checks.values() for e in c.values())
    for kind, check in checks.items():
        for name, e in check.items():
            mark = "ok  " if e["passed"] else "FAIL"
            extra = f"  top1 {e['top1_agreement']:.0%}" if "top1_agreement" in e else ""
            print(f"{mark} {name} vs {kind}: max abs err {e['max_abs_err']:.3g}, "
                  f"{e['rel_err']:.3g} of range (tolerance {e['tolerance']:g}){extra}")
    extra_checks = getattr(session, "verify_checks", lambda: {})()
    for name, check in extra_checks.items():
        print(("ok   " if check["passed"] else "FAIL ") + f"{name}: {check['detail']}")
        passed = passed and check["passed"]
    print("verify: " + ("PASSED" if passed else "FAILED") + f" ({len(next(iter(inputs.values())))} samples)")
    return {"passed": passed, "checks": checks, "extra": extra_checks}, (0 if passed else 1)


def cmd_infer(args, manifest, session, info):
    if not args.inputs or not os.path.exists(args.inputs):
        fail(f"--inputs file not found: {args.inputs}")
    outputs = run_all(session, manifest, load_npz(args.inputs))
    np.savez(args.outputs, **outputs)
    shapes = {k: list(v.shape) for k, v in outputs.items()}
    print(f"wrote {args.outputs}: {shapes}")
    return {"outputs": args.outputs, "shapes": shapes}, 0


def sample_feed(manifest):
    inputs = load_npz(os.path.join(HERE, manifest["samples"]["inputs"]))
    return next(split_batches(manifest, {k: v[:max(1, _batch(manifest))] for k, v in inputs.items()}))


def _batch(manifest):
    first = manifest["inputs"][0]["shape"][0]
    return first if isinstance(first, int) else 1


def peak_rss_mb():
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except ImportError:
        return None


def timed_runs(session, feed, warmup, iters):
    for _ in range(warmup):
        session.run(feed)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        session.run(feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return np.array(times)


def cmd_bench(args, manifest, session, info):
    feed = sample_feed(manifest)
    times = timed_runs(session, feed, args.warmup, args.iters)
    batch = _batch(manifest)
    stats = {
        "mean_ms": float(times.mean()), "p50_ms": float(np.percentile(times, 50)),
        "p90_ms": float(np.percentile(times, 90)), "p99_ms": float(np.percentile(times, 99)),
        "min_ms": float(times.min()), "max_ms": float(times.max()), "std_ms": float(times.std()),
        "throughput_per_s": float(1000.0 * batch / times.mean()),
        "load_time_ms": info["load_time_s"] * 1000.0, "peak_rss_mb": peak_rss_mb(),
        "warmup": args.warmup, "iters": args.iters, "threads": args.threads, "batch": batch,
    }
    print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))
    if hasattr(session, "throughput"):  # runtimes that can keep several requests in flight
        stats["throughput_mode"] = session.throughput(feed, args.iters)
        print("throughput mode: " + "  ".join(f"{k}={v}" for k, v in stats["throughput_mode"].items()))
    return stats, 0


def cmd_profile(args, manifest, session, info):
    if not hasattr(session, "profile"):
        fail(f"{manifest['runtime']['name']} offers no per-layer profile")
    records = session.profile(sample_feed(manifest), args.warmup, args.iters)
    total = sum(r["ms"] for r in records) or 1.0
    for r in sorted(records, key=lambda r: -r["ms"])[:25]:
        print(f"{r['ms']:9.4f} ms {100 * r['ms'] / total:5.1f}%  {r['op']:<24} {r['name']}")
    return {"layers": records, "total_ms": total}, 0


def main(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=None, help="runtime threads (default: the target's)")
    common.add_argument("--json", help="also write the report as JSON to this file")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", parents=[common], help="run the bundled samples and compare with expected outputs")
    verify.add_argument("--outputs", help="also write the samples' outputs to this .npz")
    infer = sub.add_parser("infer", parents=[common], help="run inputs from an .npz keyed by input name")
    infer.add_argument("--inputs", required=True)
    infer.add_argument("--outputs", required=True)
    for name in ("bench", "profile"):
        p = sub.add_parser(name, parents=[common], help=f"{name} the model on one sample")
        p.add_argument("--warmup", type=int, default=10)
        p.add_argument("--iters", type=int, default=100 if name == "bench" else 20)
    args = parser.parse_args(argv)

    manifest = load_manifest()
    check_model_files(manifest)
    threads = args.threads or manifest["target"].get("threads")
    args.threads = threads
    session, load_time, version = open_session(manifest, threads)
    info = {"load_time_s": load_time}
    handler = {"verify": cmd_verify, "infer": cmd_infer, "bench": cmd_bench, "profile": cmd_profile}[args.command]
    report, code = handler(args, manifest, session, info)
    report.update({"command": args.command, "runtime": manifest["runtime"]["name"], "runtime_version": version,
                   "machine": platform.machine(), "python": platform.python_version(), "threads": threads})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
