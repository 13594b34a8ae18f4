"""The Python API that the CLI wraps: build, inspect, verify, bench, profile, targets.

It logs through `logging` (logger names under "edgec") and prints nothing: the CLI decides what
a user sees.
"""
from __future__ import annotations

import dataclasses
import logging
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edgec import __version__, system
from edgec import ir as eir
from edgec.errors import HarnessCrash, InputError, IntegrityError, RuntimeMissingError, UnsupportedError, stage
from edgec.ir.validate import check_memory
from edgec.outputs import check_folder, mark, output_lock
from edgec.ir.bindings import ConstInput, bind_inputs, config_like_inputs
from edgec.package import artifact as files
from edgec.package.harness.errors import ExitCode
from edgec.package.harness.manifest import (
    BuildHost, BuildRecord, Manifest, ModelFiles, PassesRecord, Runtime, Samples, Source, TensorSpec, Verification,
    VerificationResult, from_json, to_json)
from edgec.targets import PRECISIONS, Target, load_target

logger = logging.getLogger(__name__)

UNVERIFIED_SUFFIX = ".unverified"


@dataclass
class Artifact:
    """A built artifact: where it is and its manifest. One that did not verify is in OUT.unverified/."""

    path: Path
    manifest: Manifest

    @property
    def verified(self) -> bool:
        result = self.manifest.verification.result
        return result is not None and result.passed


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
    samples: str | None = None,
    force: bool = False,
    options: dict | None = None,
    host_verify: bool = True,
    trust_code: bool = False,
) -> Artifact:
    """Compile `source` for `target` into the artifact folder `output`.

    An artifact whose outputs disagree with the source model on the build host goes to
    `output` + ".unverified" instead (Artifact.verified is False; the CLI exits 3).
    `trust_code` allows a source that runs code when loaded (model.py, .pt2).
    `host_verify=False` skips running the artifact's harness on the build host, for callers that
    run it themselves (the node suite); such an artifact stays in `output`, unverified.
    """
    from edgec import frontends

    started = time.perf_counter()
    target = target if isinstance(target, Target) else load_target(target)
    precision = precision or target.precision
    _check_precision(target, precision)
    user_files = (frontends.source_path(source), weights, calibration, samples)
    output = check_folder(output, force, user_files)
    unverified = check_folder(output.with_name(output.name + UNVERIFIED_SUFFIX), True, user_files)
    with output_lock(output, unverified):
        return _build(source, target, output, unverified, user_files, started, precision, input_shapes, const_inputs,
                      weights, calibration, samples, options, host_verify, trust_code)


def _build(source, target, output, unverified, user_files, started, precision, input_shapes, const_inputs, weights,
           calibration, samples, options, host_verify, trust_code) -> Artifact:
    """The build itself, while this process holds the lock on its output folders."""
    from edgec import frontends, options as declared, passes
    from edgec.backends import BuildContext, get_backend
    from edgec.package import samples as sampling
    from edgec.quantize import check_options

    specs = eir.parse_input_specs(input_shapes)
    backend = get_backend(target.backend)
    values = declared.resolve(target, dict(options or {}))
    check_options(precision, calibration, values)

    bindings = [ConstInput.parse(text) for text in const_inputs]
    with stage("importing the model", "check that the file opens in its own framework"):
        model = frontends.load(source, specs, weights, trust_code)
    notes = bind_inputs(model, bindings)
    source_inputs, source_outputs = sampling.model_interface(model)  # batch axes: before static shapes fix them
    notes += eir.resolve_static_shapes(model) if target.static_shapes else []
    for note in notes:
        logger.info(note)
    source_inputs = sampling.with_shapes_of(model, source_inputs)
    check_memory(source_inputs, sampling.SAMPLE_RUNS)
    calibration_data = None
    if calibration is not None:
        from edgec.quantize.data import load_calibration

        calibration_data = load_calibration(calibration, model, source_inputs, values.preprocess)
    given = _user_samples(samples, source_inputs) or (calibration_data.runs if calibration_data else None)
    original = eir.clone(model)
    samples_in = sampling.sample_inputs(original, source_inputs, given)
    with stage("running the source model in onnxruntime", "the source model itself does not run"):
        samples_ref = sampling.reference_outputs(original, source_inputs, source_outputs, samples_in)
    checker = passes.Checker(sampling.split(source_inputs, samples_in, "the samples"), samples_ref, source_outputs)
    model, report = passes.optimize(model, checker, min_opset=_min_opset(backend, target, precision))
    for warning in report.warnings:
        logger.warning(warning)
    logger.info(f"optimized graph: {report.nodes_before} -> {report.nodes_after} nodes")
    unsupported = backend.unsupported(model)
    lowerable = {u.op_type for u in unsupported} & set(passes.LOWERINGS)
    if lowerable:
        model, warnings = passes.lower_for_target(model, lowerable, checker)
        for warning in warnings:
            logger.warning(warning)
        logger.info(f"unrolled {', '.join(sorted(lowerable))} into basic operators for {target.name}")
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
            model, quantization = quantize_for_target(model, target, precision, calibration_data, backend, values)

    with system.temporary_folder(output) as folder:
        mark(folder, "artifact")
        logger.info(f"lowering with the {backend.name} backend")
        with stage(f"lowering with {backend.name}", f"try another target; `edgec inspect {source}` lists them"):
            lowered = backend.lower(model, BuildContext(target, precision, folder, calibration_data, values,
                                                        float_model))
        inputs = _with_batch_axes(lowered.inputs, source_inputs)
        outputs = _with_batch_axes(lowered.outputs, source_outputs)
        from edgec.package.harness import interface

        (folder / "samples").mkdir()
        sample_files = Samples(len(next(iter(samples_in.values()))) if samples_in else 1)
        interface.save(folder / sample_files.inputs, interface.to_interface(samples_in, inputs, stacked=True))
        interface.save(folder / sample_files.expected,
                       interface.to_interface(samples_ref, outputs, stacked=True, quantized=False))
        files.install_harness(folder, backend.session, backend.requirements(target))
        from edgec.package import policy

        verification = Verification(policy.reference_policy(precision), lowered.host_policy or policy.host_policy())
        manifest = _manifest(source, target, backend, precision, lowered, quantization, folder, original,
                             source_inputs, source_outputs, inputs, outputs, sample_files, verification, report,
                             values, input_shapes, const_inputs, calibration, notes)
        files.write_readme(folder, manifest)
        files.write_manifest(folder, manifest)
        if host_verify:
            manifest.verification.result = _verify_on_host(folder, manifest)
        manifest.build.seconds = round(time.perf_counter() - started, 3)
        files.write_manifest(folder, manifest)
        built = Artifact(output, manifest)
        if host_verify and not built.verified:
            built.path = unverified
            logger.warning(f"the artifact did not pass verification on the build host: it is in {built.path}, "
                           f"not {output}")
        check_folder(built.path, True, user_files)  # still ours to replace, after the build's minutes
        system.publish(folder, built.path)
    return built


def _check_precision(target: Target, precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    if precision not in target.precisions:
        from edgec.targets import available

        why = target.refused.get(precision)
        others = [t.name for t in available() if precision in t.precisions]
        raise UnsupportedError(
            f"target {target.name} does not build {precision}" + (f" ({why})" if why else "")
            + f"; it builds {', '.join(target.precisions)}"
            + (f"; targets that build {precision}: {', '.join(others)}" if others else "")
        )


def _min_opset(backend, target, precision: str) -> int:
    """The opset the backend's importer and, for int8, the target's per-channel scheme need."""
    from edgec.quantize import PER_CHANNEL_OPSET

    per_channel = precision == "int8" and target.quantization.get("per_channel", False)
    return max(backend.min_opset, PER_CHANNEL_OPSET if per_channel else 1)


def _control_flow_hint(model, unsupported) -> str:
    """For an If/Loop the target cannot take: the inputs whose binding would fold it away."""
    if not any(u.op_type in ("If", "Loop", "Scan") for u in unsupported):
        return ""
    candidates = [c["name"] for c in config_like_inputs(model)]
    if not candidates:
        return "Control flow that depends on inputs can be folded by binding them with --const-input NAME=VALUE. "
    return (f"Bind the configuration input(s) {', '.join(candidates)} with --const-input NAME=VALUE to fold "
            "the control flow away. ")


def _user_samples(path: str | None, specs: list[TensorSpec]):
    """--samples FILE.npz: the user's sample runs, one sample each where the batch is dynamic."""
    if path is None:
        return None
    from edgec.package import samples as sampling
    from edgec.quantize.data import load_arrays

    arrays, _labels = load_arrays(path, specs, "sample")
    return sampling.split(specs, arrays, path, dynamic_batch=1)


def _with_batch_axes(specs: list[TensorSpec], source: list[TensorSpec]) -> list[TensorSpec]:
    """The artifact's interface with the source model's batch axes, moved by its layout permutation."""
    axes = {s.name: s.batch_axis for s in source}
    result = []
    for spec in specs:
        axis = axes.get(spec.name)
        if axis is not None and spec.source_perm:
            axis = spec.source_perm.index(axis)
        result.append(dataclasses.replace(spec, batch_axis=axis))
    return result


def _manifest(source, target, backend, precision, lowered, quantization, stage, original, source_inputs,
              source_outputs, inputs, outputs, sample_files, verification, report, values, input_shapes,
              const_inputs, calibration, notes) -> Manifest:
    import onnx_ir as ir

    from edgec.frontends import source_path as path_of
    from edgec.package.harness.manifest import SCHEMA_VERSION

    source_path = path_of(source)
    source_file = source_path if source_path.is_file() else None
    model_files = {name: files.file_entry(stage / name) for name in lowered.model_files}
    version = backend.runtime_version()
    return Manifest(
        schema_version=SCHEMA_VERSION,
        edgec_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_host=BuildHost(platform.machine(), platform.python_version(), ir.__version__),
        source=Source(source_path.stem or source, str(source), files.sha256(source_file) if source_file else None,
                      source_file.stat().st_size if source_file else None, original.opset_imports.get("", None),
                      source_inputs, source_outputs),
        target=target,
        backend=lowered.config,
        runtime=Runtime(backend.runtime, version, f"{backend.runtime}=={version}", backend.session),
        precision=precision,
        quantization=quantization,
        model=ModelFiles(lowered.model_files[0], model_files, sum(f.bytes for f in model_files.values())),
        inputs=inputs,
        outputs=outputs,
        samples=sample_files,
        verification=verification,
        build=BuildRecord(dataclasses.asdict(values), list(input_shapes), str(calibration) if calibration else None,
                          PassesRecord(report.nodes_before, report.nodes_after, report.ops_after, report.warnings,
                                       report.guard.dropped, report.guard.max_error),
                          notes, list(const_inputs)),
    )


def _verify_on_host(stage: Path, manifest: Manifest) -> VerificationResult:
    """Run the artifact's own verify on this machine, keeping its outputs as samples/host.npz:
    the reference that devices must reproduce."""
    from edgec.runners import HarnessCall

    call = HarnessCall("verify", outputs={"--outputs": stage / manifest.samples.host})
    result, _ = run_harness(stage, call, "local", manifest)
    for line in result.stdout.strip().splitlines():
        logger.info(line)
    return dataclasses.replace(_verification(result), device="local (build host)")


def _verification(result) -> VerificationResult:
    verdict = from_json(VerificationResult, {k: v for k, v in result.report.items() if k != "run"}, "verify report")
    return dataclasses.replace(verdict, device=result.device)


def run_harness(artifact: str | Path, call, device: str | None = None, manifest: Manifest | None = None,
                trusted_key: str | None = None):
    """Run the artifact's own harness on a device (default: the target's); return (result, manifest).

    Before any of its code runs, edgec checks with its own code that the manifest is signed by
    `trusted_key` (when given) and that every file matches the manifest (exit 4 otherwise).

    The harness's exit code becomes edgec's: 0 (and 3 from verify) return; 2, 4 and 5 raise the
    error with that code, quoting the harness; anything else is a bug in edgec (exit 1).
    """
    from edgec.runners import get_runner

    artifact = Path(artifact)
    if trusted_key is not None:
        from edgec.package.signing import check_signature

        check_signature(artifact, trusted_key)
    manifest = manifest or files.read_manifest(artifact)
    files.check_integrity(artifact, manifest)
    foreign = files.foreign_code(artifact, manifest)
    if foreign:
        logger.warning(f"this artifact's code is not edgec's: {', '.join(foreign)} differ from what edgec "
                       f"{__version__} ships (signatures, not hashes, say who wrote it)")
    result = get_runner(device or _default_device(manifest)).run_harness(artifact, call)
    code, why = result.returncode, system.last_line(result.stderr or result.stdout).removeprefix("error: ")
    where = f"{call.command} on {result.device}"
    if code in (ExitCode.OK, ExitCode.NOT_FAITHFUL) and result.report:
        return result, manifest
    if code == ExitCode.REFUSED:
        raise InputError(f"{where} refused: {why}")
    if code == ExitCode.INTEGRITY:
        raise IntegrityError(f"{where}: {why}")
    if code == ExitCode.RUNTIME_MISSING:
        raise RuntimeMissingError(f"{where}: {why}")
    raise HarnessCrash(f"{where} failed with exit code {code}: {why} (a bug in edgec's harness: please report it)")


def _default_device(manifest: Manifest) -> str:
    """The target's device, unless it is an ssh address: one named inside a (maybe downloaded) artifact is
    never contacted unless the user names it."""
    named = manifest.target.device or "local"
    if named.startswith("ssh://"):
        raise InputError(f"this artifact names the device {named!r}: edgec contacts an ssh device only when you "
                         "name it, with --device")
    return named


def verify(artifact: str | Path, device: str | None = None, trusted_key: str | None = None) -> dict:
    """Run the bundled samples on a device; `passed` False means the harness exited 3."""
    from edgec.runners import HarnessCall

    result, _ = run_harness(artifact, HarnessCall("verify"), device, trusted_key=trusted_key)
    return dict(to_json(_verification(result)), emulated=result.emulated, note=result.note, output=result.stdout)


def bench(artifact: str | Path, device: str | None = None, warmup: int = 10, iters: int = 100,
          threads: int | None = None, trusted_key: str | None = None) -> dict:
    from edgec.runners import HarnessCall

    args = ("--warmup", str(warmup), "--iters", str(iters)) + (("--threads", str(threads)) if threads else ())
    result, manifest = run_harness(artifact, HarnessCall("bench", args), device, trusted_key=trusted_key)
    return dict(result.report, device=result.device, emulated=result.emulated, note=result.note,
                target=manifest.target.name, precision=manifest.precision, model_bytes=manifest.model.bytes,
                model=manifest.source.name)


def profile(artifact: str | Path, device: str | None = None, iters: int = 20, trusted_key: str | None = None) -> dict:
    from edgec.runners import HarnessCall

    result, _ = run_harness(artifact, HarnessCall("profile", ("--iters", str(iters))), device, trusted_key=trusted_key)
    return dict(result.report, device=result.device, emulated=result.emulated)


def inspect(source: str, input_shapes: tuple[str, ...] = (), weights: str | None = None,
            trust_code: bool = False) -> dict:
    """Describe a model (or an artifact): I/O, ops, parameters, MACs, and what each target cannot take."""
    path = Path(source)
    if path.is_dir() and (path / files.MANIFEST).exists():
        return {"artifact": to_json(files.read_manifest(path))}
    from edgec import frontends, passes
    from edgec.backends import get_backend
    from edgec.ir import stats
    from edgec.targets import available

    import onnx_ir.passes.common as common

    model = frontends.load(source, eir.parse_input_specs(input_shapes), weights, trust_code)
    per_sample = eir.clone(model)  # MACs for one sample: a symbolic batch counts as 1
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
            "inputs": to_json(eir.io_specs(model.graph.inputs)),
            "outputs": to_json(eir.io_specs(model.graph.outputs)),
            "operators": passes.op_histogram(model),
            "parameters": stats.parameter_count(model),
            "macs": {"by_op": macs, "total": sum(macs.values()), "complete": complete},
            "configuration_inputs": config_like_inputs(model),
        },
        "unsupported_by_target": coverage,
    }


def sign(artifact: str | Path, key: str | Path) -> Path:
    """Sign an artifact's manifest with an Ed25519 private key; return the signature file."""
    from edgec.package.signing import sign as sign_manifest

    return sign_manifest(artifact, key)


def targets() -> list[dict]:
    """Every bundled target, its options, and the ONNX operators its backend claims."""
    from edgec.backends import get_backend
    from edgec.targets import available, describe

    return [dict(describe(t), operators=get_backend(t.backend).claimed_operators()) for t in available()]
