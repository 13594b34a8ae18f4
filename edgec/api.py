"""The Python API that the CLI wraps: build, inspect, verify, bench, targets."""
from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from edgec import __version__
from edgec import ir as eir
from edgec import package
from edgec.errors import InputError, UnsupportedError, VerificationError, stage
from edgec.ir.bindings import ConstInput, bind_inputs, config_like_inputs
from edgec.package import npz
from edgec.targets import PRECISIONS, Target, load_target


def _quiet(*_args, **_kwargs):
    pass


def build(
    source: str,
    target: str | Target = "onnxruntime",
    output: str | Path = "out",
    *,
    precision: str | None = None,
    input_shapes: tuple[str, ...] = (),
    const_inputs: tuple[str, ...] = (),
    weights: str | None = None,
    calibration: str | None = None,
    force: bool = False,
    options: dict | None = None,
    compression=None,
    log=_quiet,
) -> dict:
    """Compile `source` for `target` into the artifact folder `output`; return its manifest.

    `compression` (an edgec.compress.plan.Plan) compresses the source first, as `edgec compress` does;
    the manifest records what was done and its measured effect."""
    from edgec import frontends, passes
    from edgec.backends import BuildContext, get_backend

    started = time.perf_counter()
    target = target if isinstance(target, Target) else load_target(target)
    precision = precision or target.precision
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    if precision not in target.precisions:
        from edgec.targets import available

        why = target.options.get("refused", {}).get(precision)
        others = [t.name for t in available() if precision in t.precisions]
        raise UnsupportedError(
            f"target {target.name} does not build {precision}" + (f" ({why})" if why else "")
            + f"; it builds {', '.join(target.precisions)}"
            + (f"; targets that build {precision}: {', '.join(others)}" if others else "")
        )
    output = Path(output)
    if output.exists() and not force:
        raise InputError(f"output folder {output} already exists: choose another -o or pass --force")
    specs = [eir.InputSpec.parse(s) for s in input_shapes]
    backend = get_backend(target.backend)
    options = dict(options or {})

    from edgec.quantize import check_options

    check_options(precision, calibration, options)

    bindings = [ConstInput.parse(text) for text in const_inputs]
    if compression is not None:
        model, compressed = _compressed_source(source, compression, specs, weights, calibration, options, log)
    else:
        with stage("importing the model", "check that the file opens in its own framework"):
            model = frontends.load(source, specs, weights)
    notes = bind_inputs(model, bindings)
    notes += eir.resolve_static_shapes(model) if target.static_shapes else []
    calibration_data = None
    if calibration is not None:
        from edgec.quantize.data import load_calibration

        calibration_data = load_calibration(calibration, model, target, options)
    for note in notes:
        log(note)
    original = model.clone()
    from edgec.package.samples import reference_outputs, sample_inputs

    samples_in = sample_inputs(original, calibration_data.arrays if calibration_data else None)
    with stage("running the source model in onnxruntime", "the source model itself does not run"):
        samples_ref = reference_outputs(original, samples_in)
    model, report = passes.optimize(model, passes.Checker(samples_in, samples_ref))
    for warning in report.warnings:
        log(warning)
    log(f"optimized graph: {report.nodes_before} -> {report.nodes_after} nodes")
    unsupported = backend.unsupported(model)
    if unsupported:
        listing = "; ".join(str(u) for u in unsupported)
        raise UnsupportedError(
            f"target {target.name} cannot take {len(unsupported)} node(s): {listing}. "
            + _control_flow_hint(model, unsupported)
            + f"Try `edgec inspect {source}` to see which targets can"
        )

    quantization = None
    float_model = model
    if precision != "fp32":
        from edgec.quantize import quantize_for_target

        with stage("quantizing", "try --precision fp16, or report the model"):
            model, quantization = quantize_for_target(model, target, precision, calibration_data, backend,
                                                      options, log)

    with package.staging(output, force) as folder:
        ctx = BuildContext(target, precision, folder, calibration_data, options, float_model, log)
        log(f"lowering with the {backend.name} backend")
        with stage(f"lowering with {backend.name}", f"try another target; `edgec inspect {source}` lists them"):
            lowered = backend.lower(model, ctx)
        samples_in = to_interface(samples_in, lowered.inputs, quantize=True)
        samples_ref = to_interface(samples_ref, lowered.outputs, quantize=False)
        (folder / "samples").mkdir()
        npz.save(folder / "samples" / "inputs.npz", samples_in)
        npz.save(folder / "samples" / "expected.npz", samples_ref)
        package.install_harness(folder, backend.harness, backend.requirements(target))
        manifest = _manifest(source, target, backend, precision, lowered, quantization, folder, original,
                             report, options, input_shapes, const_inputs, calibration, notes)
        if compression is not None:
            manifest["compression"] = compressed
        package.write_manifest(folder, manifest)
        package.write_readme(folder, manifest)
        manifest["verification"] = _verify_on_host(folder, manifest, log)
        manifest["build"]["seconds"] = round(time.perf_counter() - started, 3)
        package.write_manifest(folder, manifest)
    if not manifest["verification"]["passed"]:
        log(f"warning: the artifact in {output} did not pass verification on the build host")
    return manifest


def _compressed_source(source, plan, specs, weights, calibration, options, log):
    """The compressed source model as IR, and the record of what was done and what it changed.
    BatchNorm re-estimation uses --calibration when it is an array file and no other data was named."""
    import dataclasses
    import tempfile

    from edgec.compress import pipeline, report

    if plan.calibration is None and calibration and Path(calibration).suffix in (".npz", ".npy"):
        plan = dataclasses.replace(plan, calibration=calibration)
    outcome = pipeline.run(source, plan, specs, weights, log)
    with tempfile.TemporaryDirectory(prefix="edgec-compress-") as tmp:
        _, measured = report.evaluate(outcome, source, plan.to_dict(), Path(tmp), options.get("eval_data"), log=log)
    return outcome.compressed, measured.to_dict()


def compress(source: str, output: str | Path, plan, *, input_shapes: tuple[str, ...] = (), weights: str | None = None,
             eval_data: str | None = None, latency=None, force: bool = False, log=_quiet, progress=None) -> dict:
    """Compress `source` into the ONNX model `output` as `plan` says, and measure the effect; the report
    is returned and stored beside the output as OUTPUT.compress.json. Nothing is written on failure."""
    import json
    import os
    import tempfile

    from edgec.compress import pipeline, report

    output = Path(output)
    if output.suffix != ".onnx":
        raise InputError(f"-o {output}: the compressed model is an ONNX file; name it NAME.onnx")
    report_path = output.with_suffix(".compress.json")
    if not force and (output.exists() or report_path.exists()):
        raise InputError(f"{output if output.exists() else report_path} already exists: choose another -o or pass --force")
    specs = [eir.InputSpec.parse(s) for s in input_shapes]
    outcome = pipeline.run(source, plan, specs, weights, log, progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgec-compress-", dir=output.parent) as tmp:
        staged, measured = report.evaluate(outcome, source, plan.to_dict(), Path(tmp), eval_data, latency, log,
                                           name=output.name)
        measured.output = str(output)
        result = measured.to_dict()
        (staged.parent / report_path.name).write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
        for extra in staged.parent.glob(staged.name + ".data"):
            os.replace(extra, output.parent / (output.name + ".data"))
        os.replace(staged, output)
        os.replace(staged.parent / report_path.name, report_path)
    return result


def _control_flow_hint(model, unsupported) -> str:
    """For an If/Loop the target cannot take: the inputs whose binding would fold it away."""
    if not any(u.op_type in ("If", "Loop", "Scan") for u in unsupported):
        return ""
    candidates = [c["name"] for c in config_like_inputs(model)]
    if not candidates:
        return "Control flow that depends on inputs can be folded by binding them with --const-input NAME=VALUE. "
    return (f"Bind the configuration input(s) {', '.join(candidates)} with --const-input NAME=VALUE to fold "
            "the control flow away. ")


def to_interface(arrays: dict, specs: list[dict], quantize: bool) -> dict:
    """Bring source-model arrays into the artifact's interface: its layout and, for inputs, its dtype.

    A spec may carry `source_perm` (the transpose from the source layout, e.g. NCHW to NHWC)
    and `quantization` ({scale, zero_point}) for integer I/O.
    """
    import numpy as np

    result = {}
    for spec in specs:
        value = arrays[spec["name"]]
        if spec.get("source_perm"):
            value = np.ascontiguousarray(np.transpose(value, spec["source_perm"]))
        q = spec.get("quantization")
        if quantize and q:
            info = np.iinfo(spec["dtype"])
            value = np.clip(np.round(value / q["scale"]) + q["zero_point"], info.min, info.max)
        result[spec["name"]] = value.astype(spec["dtype"]) if quantize else value
    return result


def _manifest(source, target, backend, precision, lowered, quantization, stage, original, report, options,
              input_shapes, const_inputs, calibration, notes) -> dict:
    import onnx_ir as ir

    from edgec.frontends import source_path as path_of

    source_path = path_of(source)
    source_file = source_path if source_path.is_file() else None
    files = {name: package.file_entry(stage / name) for name in lowered.model_files}
    return {
        "schema_version": package.SCHEMA_VERSION,
        "edgec_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_host": {"machine": platform.machine(), "python": platform.python_version(),
                       "onnx_ir": ir.__version__},
        "source": {
            "name": source_path.stem or source,
            "path": str(source),
            "sha256": package.sha256(source_file) if source_file else None,
            "bytes": source_file.stat().st_size if source_file else None,
            "opset": original.opset_imports.get("", None),
            "inputs": eir.io_specs(original.graph.inputs),
            "outputs": eir.io_specs(original.graph.outputs),
        },
        "target": target.to_dict(),
        "backend": {"name": backend.name, **lowered.meta},
        "runtime": {
            "name": backend.runtime,
            "version": backend.runtime_version(),
            "requirement": f"{backend.runtime}=={backend.runtime_version()}",
        },
        "precision": precision,
        "quantization": quantization,
        "model": {"main": lowered.model_files[0], "files": files,
                  "bytes": sum(f["bytes"] for f in files.values())},
        "inputs": lowered.inputs,
        "outputs": lowered.outputs,
        "samples": {
            "inputs": "samples/inputs.npz",
            "expected": "samples/expected.npz",
            "host": "samples/host.npz",
            "tolerance": package.TOLERANCE[precision],
            # a backend may widen it: a cross-compiled fp16 model rounds differently on the device's fp16 units
            "host_tolerance": lowered.meta.get("host_tolerance", package.HOST_TOLERANCE),
        },
        "build": {
            "options": {k: v for k, v in sorted(options.items())},
            "input_shapes": list(input_shapes),
            "const_inputs": list(const_inputs),
            "calibration": str(calibration) if calibration else None,
            "passes": {"nodes_before": report.nodes_before, "nodes_after": report.nodes_after,
                       "ops_after": report.ops_after, "warnings": report.warnings,
                       "dropped": report.guard.dropped, "max_error": report.guard.max_error},
            "notes": notes,
        },
        "sizes": {"source_bytes": source_file.stat().st_size if source_file else None,
                  "model_bytes": sum(f["bytes"] for f in files.values())},
    }


def _verify_on_host(stage: Path, manifest: dict, log) -> dict:
    """Run the artifact's own verify on this machine, keeping its outputs as samples/host.npz:
    the reference that devices must reproduce."""
    host = stage / manifest["samples"]["host"]
    _, result = run_harness(stage, ["verify", "--outputs", str(host)], "local", ok=(0, 1))
    npz.save(host, npz.load(host))  # rewrite with fixed timestamps so builds are byte-identical
    log(result.stdout.strip())
    return {"device": "local (build host)", "passed": result.report.get("passed", False),
            "checks": result.report.get("checks", {}), "extra": result.report.get("extra", {})}


def _last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else "no output"


def run_harness(artifact: str | Path, command: list[str], device: str | None = None, ok=(0,)):
    """Run the artifact's own harness on a device (default: the target's); return (manifest, result).

    An exit code outside `ok`, or no JSON report, is an error that quotes the harness's last line.
    """
    from edgec.runners import get_runner

    artifact = Path(artifact)
    manifest = package.read_manifest(artifact)
    result = get_runner(device or manifest["target"].get("device") or "local").run_harness(artifact, command)
    if result.returncode not in ok or not result.report:
        raise VerificationError(f"{command[0]} failed on {result.device}: {_last_line(result.stderr or result.stdout)}")
    return manifest, result


def verify(artifact: str | Path, device: str | None = None) -> dict:
    _, result = run_harness(artifact, ["verify"], device, ok=(0, 1))  # 1: ran, outputs disagree
    return dict(result.report, device=result.device, emulated=result.emulated, output=result.stdout)


def bench(artifact: str | Path, device: str | None = None, warmup: int = 10, iters: int = 100,
          threads: int | None = None) -> dict:
    args = ["bench", "--warmup", str(warmup), "--iters", str(iters)]
    if threads:
        args += ["--threads", str(threads)]
    manifest, result = run_harness(artifact, args, device)
    report = dict(result.report, device=result.device, emulated=result.emulated,
                  target=manifest["target"]["name"], precision=manifest["precision"],
                  model_bytes=manifest["model"]["bytes"], model=manifest["source"]["name"])
    if result.emulated:
        report["note"] = "emulated: these timings prove the artifact runs, not how fast the device is"
    return report


def profile(artifact: str | Path, device: str | None = None, iters: int = 20) -> dict:
    _, result = run_harness(artifact, ["profile", "--iters", str(iters)], device)
    return dict(result.report, device=result.device, emulated=result.emulated)


def inspect(source: str, input_shapes: tuple[str, ...] = (), weights: str | None = None) -> dict:
    """Describe a model (or an artifact): I/O, ops, parameters, MACs, and what each target cannot take."""
    path = Path(source)
    if path.is_dir() and (path / package.MANIFEST).exists():
        return {"artifact": package.read_manifest(path)}
    from edgec import frontends, passes
    from edgec.backends import get_backend
    from edgec.ir import stats
    from edgec.targets import available

    import onnx_ir.passes.common as common

    model = frontends.load(source, [eir.InputSpec.parse(s) for s in input_shapes], weights)
    per_sample = model.clone()  # MACs for one sample: a symbolic batch counts as 1
    try:
        eir.resolve_static_shapes(per_sample)
    except UnsupportedError:
        pass
    common.ShapeInferencePass()(per_sample)
    macs, complete = stats.macs_by_op(per_sample)
    per_sample, _ = passes.optimize(per_sample)  # coverage is judged on the graph a build would lower
    coverage = {}
    for target in available():
        missing = get_backend(target.backend).unsupported(per_sample)
        coverage[target.name] = [{"op": u.op_type, "node": u.node, "reason": u.reason} for u in missing]
    return {
        "model": {
            "path": str(source),
            "bytes": path.stat().st_size if path.is_file() else None,
            "opset": model.opset_imports.get("", None),
            "producer": model.producer_name,
            "inputs": eir.io_specs(model.graph.inputs),
            "outputs": eir.io_specs(model.graph.outputs),
            "operators": passes.op_histogram(model),
            "parameters": stats.parameter_count(model),
            "macs": {"by_op": macs, "total": sum(macs.values()), "complete": complete},
            "configuration_inputs": config_like_inputs(model),
        },
        "unsupported_by_target": coverage,
    }


def targets() -> list[dict]:
    from edgec.targets import available

    return [t.to_dict() for t in available()]
