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
    SCHEMA_VERSION, BuildHost, BuildRecord, Manifest, PassesRecord, Runtime, Samples, Source, TensorSpec,
    Verification, VerificationResult, from_json, to_json)
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
    device=None,
    compression=None,
    trust_code: bool = False,
) -> Artifact:
    """Compile `source` for `target` into the artifact folder `output`.

    An artifact whose outputs disagree with the source model on the build host goes to
    `output` + ".unverified" instead (Artifact.verified is False; the CLI exits 3).
    `trust_code` allows a source that runs code when loaded (model.py, .pt2).
    `host_verify=False` skips running the artifact's harness on the build host, for callers that
    run it themselves (the node suite); such an artifact stays in `output`, unverified.
    Target `auto` builds for the target that `device` (a --device value or DeviceSpec) suggests.
    `compression` (an edgec.compress.plan.Plan) compresses the source first, as `edgec compress` does;
    the manifest records what was done and its measured effect.
    """
    from edgec import frontends

    started = time.perf_counter()
    if target == "auto":
        target = _suggested_target(device)
    target = target if isinstance(target, Target) else load_target(target)
    precision = precision or target.precision
    _check_precision(target, precision)
    user_files = (frontends.source_path(source), weights, calibration, samples)
    output = check_folder(output, force, user_files)
    unverified = check_folder(output.with_name(output.name + UNVERIFIED_SUFFIX), True, user_files)
    with output_lock(output, unverified):
        return _build(source, target, output, unverified, user_files, started, precision, input_shapes, const_inputs,
                      weights, calibration, samples, options, host_verify, trust_code, compression)


def _build(source, target, output, unverified, user_files, started, precision, input_shapes, const_inputs, weights,
           calibration, samples, options, host_verify, trust_code, compression) -> Artifact:
    """The build itself, while this process holds the lock on its output folders."""
    import onnx_ir

    from edgec import frontends, options as declared, passes
    from edgec.backends import BuildContext, get_backend
    from edgec.package import policy, samples as sampling
    from edgec.quantize import check_options

    specs = eir.parse_input_specs(input_shapes)
    backend = get_backend(target.backend, target)
    values = declared.resolve(target, dict(options or {}))
    check_options(precision, calibration, values)

    bindings = [ConstInput.parse(text) for text in const_inputs]
    compressed = None
    if compression is not None:
        model, compressed = _compressed_source(source, compression, specs, weights, calibration, values, trust_code)
    else:
        with stage("importing the model", "check that the file opens in its own framework"):
            model = frontends.load(source, specs, weights, trust_code)
    notes = bind_inputs(model, bindings)
    source_inputs, source_outputs = sampling.model_interface(model)  # batch axes: before static shapes fix them
    notes += backend.static_shapes(model, values)
    for note in notes:
        logger.info(note)
    source_inputs = sampling.with_shapes_of(model, source_inputs)
    check_memory(source_inputs, sampling.SAMPLE_RUNS)
    calibration_data = None
    if calibration is not None:
        from edgec.quantize.data import load_calibration

        calibration_data = load_calibration(calibration, model, source_inputs, values.preprocess)
        calibration_data = calibration_data.first(getattr(values, "calibration_samples", None))
    given = _user_samples(samples, source_inputs) or (calibration_data.runs if calibration_data else None)
    samples_in = sampling.sample_inputs(model, source_inputs, given)
    snapshot = eir.Snapshot.of(model)  # serialized once: for the reference run and the pipeline's reruns
    with stage("running the source model in onnxruntime", "the source model itself does not run"):
        samples_ref = sampling.reference_outputs(snapshot or model, source_inputs, source_outputs, samples_in)
    source_record = _source_record(source, model, source_inputs, source_outputs)
    checker = passes.Checker(sampling.split(source_inputs, samples_in, "the samples"), samples_ref, source_outputs)
    # the source model is not needed again: the pipeline edits it, not a copy (1.7 s at 16,000 nodes)
    model, report = passes.optimize(model, checker, min_opset=_min_opset(backend, target, precision), snapshot=snapshot)
    # each output's kind is read from the optimized graph: its shapes are inferred and its shape arithmetic folded
    # (an exporter's declared output shape can be wrong: [1, seqlen] for a [24, 1, 8210] CTC logits tensor)
    reference_policy = policy.reference_policy(model, precision, target, values.output_kind, values.tolerance)
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
    float_model, judge = model, None
    if precision != "fp32":
        from edgec.quantize import quantize_for_target

        with stage("quantizing", "try --precision fp16, or report the model"):
            from edgec.quantize.fallback import PolicyJudge

            judge = PolicyJudge(checker, reference_policy, backend.int8_runner)
            model, quantization = quantize_for_target(model, target, precision, calibration_data, backend, values,
                                                      judge)
        if quantization is not None and quantization.scheme_choice is not None:  # the backend builds what was chosen
            values = dataclasses.replace(values, **quantization.scheme_choice.options)

    with system.temporary_folder(output) as folder:
        mark(folder, "artifact")
        logger.info(f"lowering with the {backend.name} backend")
        with stage(f"lowering with {backend.name}", f"try another target; `edgec inspect {source}` lists them"):
            lowered = backend.lower(model, BuildContext(target, precision, folder, calibration_data, values,
                                                        float_model, judge))
        if lowered.choice is not None:  # recorded with the quantization's choices, and replayed as they are
            quantization.float_precision_choice = lowered.choice
            values = dataclasses.replace(values, **lowered.choice.options)
        inputs = _with_batch_axes(lowered.inputs, source_inputs)
        outputs = _with_batch_axes(lowered.outputs, source_outputs)
        from edgec.package.harness import interface

        (folder / "samples").mkdir()
        sample_files = Samples(len(next(iter(samples_in.values()))) if samples_in else 1)
        interface.save(folder / sample_files.inputs, interface.to_interface(samples_in, inputs, stacked=True))
        interface.save(folder / sample_files.expected,
                       interface.to_interface(samples_ref, outputs, stacked=True, quantized=False))
        files.install_harness(folder, backend.session, backend.requirements(target))
        verification = Verification(reference_policy, lowered.host_policy or policy.host_policy())
        build_record = BuildRecord(
            dataclasses.asdict(values), list(input_shapes), str(calibration) if calibration else None,
            PassesRecord(report.nodes_before, report.nodes_after, report.ops_after, report.warnings,
                         report.guard.dropped, report.guard.max_error), notes, list(const_inputs))
        manifest = Manifest(
            schema_version=SCHEMA_VERSION, edgec_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            build_host=BuildHost(platform.machine(), platform.python_version(), onnx_ir.__version__),
            source=source_record, target=target,
            backend=lowered.config, runtime=_runtime(backend), precision=precision, quantization=quantization,
            model=files.model_files(folder, lowered.model_files), inputs=inputs, outputs=outputs,
            samples=sample_files, verification=verification, build=build_record, compression=compressed)
        files.write_readme(folder, manifest)
        if host_verify:  # the harness checks the files against the manifest before it runs
            files.write_manifest(folder, manifest)
            manifest.verification.result = _verify_on_host(folder, manifest, lowered.host_simulated)
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


def _compressed_source(source, plan, specs, weights, calibration, values, trust_code):
    """The compressed source model as IR, and the record of what was done and what it changed.
    BatchNorm re-estimation uses --calibration when it is an array file and no other data was named."""
    import tempfile

    from edgec.compress import pipeline, report

    if plan.calibration is None and calibration and Path(calibration).suffix in (".npz", ".npy"):
        plan = dataclasses.replace(plan, calibration=calibration)
    outcome = pipeline.run(source, plan, specs, weights, logger.info, trust_code=trust_code)
    with tempfile.TemporaryDirectory(prefix="edgec-compress-") as tmp:
        _, measured = report.evaluate(outcome, source, plan.to_dict(), Path(tmp), values.eval_data, log=logger.info)
    return outcome.compressed, measured.to_dict()


def compress(source: str, output: str | Path, plan, *, input_shapes: tuple[str, ...] = (), weights: str | None = None,
             eval_data: str | None = None, latency=None, force: bool = False, progress=None,
             trust_code: bool = False) -> dict:
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
    outcome = pipeline.run(source, plan, specs, weights, logger.info, progress, trust_code)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgec-compress-", dir=output.parent) as tmp:
        staged, measured = report.evaluate(outcome, source, plan.to_dict(), Path(tmp), eval_data, latency,
                                           logger.info, name=output.name)
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


def _source_record(source: str, model, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Source:
    """The source model as the manifest records it: its file's name, hash and size, opset and interface."""
    from edgec.frontends import source_path as path_of

    path = path_of(source)
    file = path if path.is_file() else None
    return Source(path.stem or source, str(source), files.sha256(file) if file else None,
                  file.stat().st_size if file else None, model.opset_imports.get("", None), inputs, outputs)


def _runtime(backend) -> Runtime:
    version = backend.runtime_version()
    return Runtime(backend.runtime, version, backend.requirement(), backend.session)


def _verify_on_host(stage: Path, manifest: Manifest, simulated: bool) -> VerificationResult:
    """Run the artifact's own verify on this machine, keeping its outputs as samples/host.npz:
    the reference that devices must reproduce. A runtime the host cannot run is simulated there."""
    from edgec.runners import HarnessCall

    call = HarnessCall("verify", ("--simulate",) if simulated else (),
                       outputs={"--outputs": stage / manifest.samples.host})
    result, _ = run_harness(stage, call, "local", manifest)
    for line in result.stdout.strip().splitlines():
        logger.info(line)
    device = "local (build host, simulated in onnxruntime: not a run of the runtime)" if simulated else \
        "local (build host)"
    return dataclasses.replace(_verification(result), device=device)


def _verification(result) -> VerificationResult:
    verdict = from_json(VerificationResult, {k: v for k, v in result.report.items() if k != "run"}, "verify report")
    return dataclasses.replace(verdict, device=result.device)


def one_device(devices: list):
    """The device of a command that runs on one (build's --target auto): None when none is named."""
    if len(devices) > 1:
        raise InputError("this command takes one --device, not a fleet")
    return devices[0] if devices else None


def _suggested_target(device) -> str:
    """The target `edgec device probe` suggests for the device that `--target auto` builds for."""
    if device is None:
        raise InputError("--target auto picks the target from a device: add --device (local, rpi4-emulated, "
                         "ssh://user@host)")
    profile = probe(device)
    logger.info("target auto: %s (%s, %s) suggests %s", profile["device"], profile["arch"], profile["cpu"],
                profile["suggested_target"])
    return profile["suggested_target"]


def run_harness(artifact: str | Path, call, device=None, manifest: Manifest | None = None,
                trusted_key: str | None = None):
    """Run the artifact's own harness on a device (default: the target's); return (result, manifest).

    Before any of its code runs, edgec checks with its own code that the manifest is signed by
    `trusted_key` (when given) and that every file matches the manifest (exit 4 otherwise).

    `device` is a --device value or a DeviceSpec. An artifact whose compiled code needs an
    instruction-set feature the device lacks is refused before it runs (exit 2); a feature
    that only makes it slower becomes a warning in the result's note.
    The harness's exit code becomes edgec's: 0 (and 3 from verify) return; 2, 4 and 5 raise the
    error with that code, quoting the harness; anything else is a bug in edgec (exit 1).
    """
    from edgec.runners import discovery, get_runner

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
    runner = get_runner(device or _default_device(manifest))
    try:
        warnings = discovery.check_artifact(runner.probe(), manifest.target, manifest.precision)
        result = runner.run_harness(artifact, call)
    finally:
        runner.close()
    result.note = "; ".join(filter(None, [result.note, *warnings]))
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


def probe(device=None) -> dict:
    """What a device is: architecture, CPU, ISA features, cores, memory, OS, Python, runtimes, and
    the target it suggests."""
    from edgec.runners import get_runner

    runner = get_runner(device)
    try:
        return runner.probe().as_json()
    finally:
        runner.close()


def on_fleet(action, devices: list) -> list[dict]:
    """Run `action(device)` on every device at once; one row per device, in the given order.

    A device that fails gets its one-line reason and exit code in its row; the others go on.
    """
    from concurrent.futures import ThreadPoolExecutor

    from edgec.errors import EdgecError
    from edgec.runners import DeviceSpec

    def row(device: DeviceSpec) -> dict:
        try:
            report = action(device)
            failed = report.get("passed") is False  # verify ran, and the outputs differ
            return {"device": device.label, "exit_code": int(ExitCode.NOT_FAITHFUL if failed else ExitCode.OK),
                    "error": "", "report": report}
        except EdgecError as exc:
            return {"device": device.label, "exit_code": int(exc.exit_code), "error": str(exc), "report": {}}
        except Exception as exc:  # noqa: BLE001 - one device's bug must not hide the others' results
            return {"device": device.label, "exit_code": int(ExitCode.BUG), "report": {},
                    "error": f"internal error: {type(exc).__name__}: {exc}"}

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        return list(pool.map(row, devices))


def _default_device(manifest: Manifest) -> str:
    """The target's device, unless it is an ssh address: one named inside a (maybe downloaded) artifact is
    never contacted unless the user names it."""
    named = manifest.target.device or "local"
    if named.startswith("ssh://"):
        raise InputError(f"this artifact names the device {named!r}: edgec contacts an ssh device only when you "
                         "name it, with --device")
    return named


def verify(artifact: str | Path, device=None, trusted_key: str | None = None) -> dict:
    """Run the bundled samples on a device; `passed` False means the harness exited 3."""
    from edgec.runners import HarnessCall

    result, _ = run_harness(artifact, HarnessCall("verify"), device, trusted_key=trusted_key)
    return dict(to_json(_verification(result)), emulated=result.emulated, note=result.note, output=result.stdout)


def bench(artifact: str | Path, device=None, warmup: int = 10, iters: int = 100,
          threads: int | None = None, trusted_key: str | None = None) -> dict:
    from edgec.runners import HarnessCall

    args = ("--warmup", str(warmup), "--iters", str(iters)) + (("--threads", str(threads)) if threads else ())
    result, manifest = run_harness(artifact, HarnessCall("bench", args), device, trusted_key=trusted_key)
    return dict(result.report, device=result.device, emulated=result.emulated, note=result.note,
                target=manifest.target.name, precision=manifest.precision, model_bytes=manifest.model.bytes,
                model=manifest.source.name)


def profile(artifact: str | Path, device=None, iters: int = 20, trusted_key: str | None = None) -> dict:
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
    per_sample, _ = passes.optimize(per_sample, snapshot=eir.Snapshot.of(per_sample))  # as a build lowers it
    coverage = {}
    for target in available():
        missing = get_backend(target.backend, target).unsupported(per_sample)
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

    return [dict(describe(t), operators=get_backend(t.backend, t).claimed_operators()) for t in available()]
