"""The edgec command line: parse options, call edgec.api, print tables or JSON. No logic here.

Exit codes: 0 success · 1 a bug in edgec · 2 refused (input, model or option) · 3 built or ran
but not faithful · 4 integrity failure · 5 the runtime is missing on the device.
"""
from __future__ import annotations

import json

import click

from edgec.errors import EdgecError
from edgec.package.harness.errors import ExitCode
from edgec.options import every_option

PRECISION = click.Choice(["fp32", "fp16", "int8"])



def _flag(ctx, param, value):
    """--debug and --verbose mean the same before and after the command name."""
    if value:
        ctx.find_root().ensure_object(dict)[param.name] = True


def common_flags(command):
    for option in (click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_flag,
                                help="show edgec's detailed log and the libraries' own output"),
                   click.option("--debug", is_flag=True, expose_value=False, callback=_flag,
                                help="show tracebacks for errors (implies --verbose)")):
        command = option(command)
    return command


class EdgecCommand(click.Command):
    """Runs a command with library output captured, and turns errors into one line and their exit code
    (EdgecError: its code; anything else: 1, the traceback with --debug)."""

    def invoke(self, ctx):
        from edgec.report.console import Terminal

        flags = ctx.find_root().ensure_object(dict)
        debug = flags.get("debug", False)
        terminal = Terminal(verbose=debug or flags.get("verbose", False))
        with terminal.session():
            flags["terminal"] = terminal
            try:
                _check_json_path(ctx.params)
                return super().invoke(ctx)
            except EdgecError as exc:
                if debug:
                    raise
                terminal.print(f"edgec: error: {exc}")
                ctx.exit(exc.exit_code)
            except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
                raise
            except Exception as exc:
                if debug:
                    raise
                terminal.print(f"edgec: internal error: {type(exc).__name__}: {exc} "
                               "(rerun with --debug for the traceback)")
                ctx.exit(1)


def _check_json_path(params: dict) -> None:
    """--json FILE is checked before any work: writable, not an input, replaced only with --force where the
    command takes it."""
    from edgec import outputs

    inputs = tuple(params[name] for name in ("source", "artifact", "weights", "calibration", "samples")
                   if params.get(name))
    outputs.check_file(params.get("json_path"), params.get("force", True), inputs)


def _terminal(ctx):
    return ctx.find_root().obj["terminal"]


def _emit(ctx, data: dict, render, json_path: str | None = None):
    """Print `data` as JSON (--json -) or as a rich table, and save JSON to a file if asked."""
    terminal = _terminal(ctx)
    if json_path and json_path != "-":
        with open(json_path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
    if json_path == "-":
        terminal.print(json.dumps(data, indent=2, sort_keys=True, default=str), err=False)
    else:
        from rich.console import Console

        from edgec.report import tables

        getattr(tables, render)(Console(file=terminal.stdout), data)


TRUST_OPTION = click.option("--trust-code", is_flag=True,
                            help="allow a source that runs code when loaded (model.py, a .pt2 program); without it "
                                 "edgec asks on a terminal and refuses otherwise")


def _trusted(source: str, flag: bool) -> bool:
    """--trust-code, or a yes typed on a terminal, for a source that runs code when loaded."""
    import sys

    from edgec import frontends

    if flag or not (sys.stdin.isatty() and sys.stderr.isatty()) or not frontends.runs_code(source):
        return flag
    return click.confirm(f"Loading {source} runs the code it holds. Do you trust it?", default=False, err=True)


JSON_OPTION = click.option("--json", "json_path", metavar="FILE",
                           help="also write the result as JSON to FILE ('-' prints JSON instead of a table)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@common_flags
@click.version_option(package_name="edgec")
@click.pass_context
def main(ctx):
    """edgec compiles trained models for edge devices and proves they run there.

    \b
      edgec build --target tflite-arm model.onnx -o out/
      edgec verify out/ --device rpi4-emulated
      edgec bench out/
    """
    ctx.ensure_object(dict)


def _click_type(option):
    if option.choices:
        return click.Choice(option.choices)
    if option.minimum is not None:
        return (click.IntRange if option.type is int else click.FloatRange)(min=option.minimum)
    return option.type


def declared_options(command):
    """One flag per option a backend or the int8 engine declares (edgec/options.py, edgec/backends)."""
    from edgec.backends import REGISTRY
    from edgec.options import COMMON, INT8

    takers = {o.name: "every target" for o in COMMON} | {o.name: "int8 builds" for o in INT8}
    for backend, entry in REGISTRY.items():
        for o in entry.options:
            takers[o.name] = f"{backend} targets"
    for option in reversed(list(every_option().values())):
        default = f"; default {option.default}" if option.default is not None else ""
        command = click.option(option.cli_flag, option.name, type=_click_type(option), default=None,
                               help=f"{option.help} ({takers[option.name]}{default})")(command)
    return command


@main.command(cls=EdgecCommand)
@click.argument("source")
@click.option("-t", "--target", default="onnxruntime", show_default=True,
              help="target name (see `edgec targets`) or path of a target .toml")
@click.option("-o", "--output", required=True, help="artifact folder to write (OUT.unverified if it does not verify)")
@click.option("--precision", type=PRECISION, help="numeric precision (default: the target's)")
@click.option("--calibration", metavar="PATH",
              help="calibration data for int8: .npz keyed by input name, .npy, an image folder, or 'random'")
@click.option("--samples", metavar="FILE.npz",
              help="sample inputs keyed by input name, for the artifact's own verification (default: the "
                   "calibration data, else generated)")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...",
              help="fix an input's shape, e.g. input:1,3,224,224 (repeatable)")
@click.option("--const-input", "const_inputs", multiple=True, metavar="NAME=VALUE",
              help="bind a configuration input (a sample rate, a flag) to a constant and fold what depends on it "
                   "(repeatable), e.g. sr=16000")
@click.option("--weights", metavar="FILE", help="state_dict for a PyTorch model.py:Class source (the .py is run as code)")
@declared_options
@click.option("--force", is_flag=True, help="replace the output folder if edgec wrote it (or it is empty)")
@TRUST_OPTION
@JSON_OPTION
@common_flags
@click.pass_context
def build(ctx, source, target, output, precision, calibration, samples, input_shapes, const_inputs, weights, force,
          trust_code, json_path, **options):
    """Compile SOURCE (an .onnx file, model.py:Class, .pt2, .keras, .h5 or SavedModel) for a target.

    A PyTorch model.py is imported and a .pt2 is unpickled: both run code, so both need --trust-code.
    """
    from edgec import api
    from edgec.package.harness.manifest import to_json

    options = {k: v for k, v in options.items() if v is not None}
    with _terminal(ctx).status("building..."):
        artifact = api.build(source, target, output, precision=precision, input_shapes=input_shapes,
                             const_inputs=const_inputs, weights=weights, calibration=calibration, samples=samples,
                             force=force, options=options, trust_code=_trusted(source, trust_code))
    _emit(ctx, to_json(artifact.manifest), "build_summary", json_path)
    if not artifact.verified:
        _terminal(ctx).print(f"edgec: the artifact does not match the source model: it is in {artifact.path}")
        ctx.exit(ExitCode.NOT_FAITHFUL)


@main.command(cls=EdgecCommand)
@click.argument("source")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...")
@click.option("--weights", metavar="FILE")
@TRUST_OPTION
@JSON_OPTION
@common_flags
@click.pass_context
def inspect(ctx, source, input_shapes, weights, trust_code, json_path):
    """Describe a model (I/O, operators, parameters, MACs, target coverage) or an artifact."""
    from edgec import api

    _emit(ctx, api.inspect(source, input_shapes, weights, _trusted(source, trust_code)), "inspect", json_path)


TRUSTED_KEY_OPTION = click.option("--trusted-key", metavar="PUB.pem",
                                  help="run the artifact only if its manifest is signed by this Ed25519 key")
DEVICE_OPTION = click.option("-d", "--device", default=None,
                             help="local, rpi4-emulated, rpi5-emulated or ssh://user@host (default: the target's device)")


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@DEVICE_OPTION
@TRUSTED_KEY_OPTION
@JSON_OPTION
@common_flags
@click.pass_context
def verify(ctx, artifact, device, trusted_key, json_path):
    """Run the artifact's samples on a device and compare with the expected outputs (exit 3 if they differ)."""
    from edgec import api

    with _terminal(ctx).status("verifying..."):
        report = api.verify(artifact, device, trusted_key)
    _emit(ctx, report, "verify", json_path)
    if not report["passed"]:
        ctx.exit(ExitCode.NOT_FAITHFUL)


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@DEVICE_OPTION
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--iters", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", type=click.IntRange(min=1), help="runtime threads (default: the target's)")
@TRUSTED_KEY_OPTION
@JSON_OPTION
@common_flags
@click.pass_context
def bench(ctx, artifact, device, warmup, iters, threads, trusted_key, json_path):
    """Measure latency percentiles, throughput, load time and peak memory on a device."""
    from edgec import api

    with _terminal(ctx).status("benchmarking..."):
        report = api.bench(artifact, device, warmup, iters, threads, trusted_key)
    _emit(ctx, report, "bench", json_path)


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@DEVICE_OPTION
@click.option("--iters", default=20, show_default=True, type=click.IntRange(min=1))
@TRUSTED_KEY_OPTION
@JSON_OPTION
@common_flags
@click.pass_context
def profile(ctx, artifact, device, iters, trusted_key, json_path):
    """Per-layer times of the artifact on a device, where the runtime offers them."""
    from edgec import api

    with _terminal(ctx).status("profiling..."):
        report = api.profile(artifact, device, iters, trusted_key)
    _emit(ctx, report, "profile", json_path)


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@click.option("--key", required=True, metavar="KEY.pem", help="Ed25519 private key (openssl genpkey -algorithm ed25519)")
@common_flags
@click.pass_context
def sign(ctx, artifact, key):
    """Sign an artifact's manifest (which hashes every file), so `verify --trusted-key` can check who built it."""
    from edgec import api

    _terminal(ctx).print(f"signed: {api.sign(artifact, key)}", err=False)


@main.command(cls=EdgecCommand)
@JSON_OPTION
@common_flags
@click.pass_context
def targets(ctx, json_path):
    """List the bundled targets, what each supports and the options each takes."""
    from edgec import api

    _emit(ctx, {"targets": api.targets()}, "targets", json_path)


@main.group()
def device():
    """Prepare devices that verify and bench can run on."""


@device.command("setup", cls=EdgecCommand)
@click.argument("name")
@JSON_OPTION
@common_flags
@click.pass_context
def device_setup(ctx, name, json_path):
    """Install what an emulated device needs (qemu, an aarch64 Python); cached, safe to repeat."""
    from edgec.runners.emulated import setup_device

    with _terminal(ctx).status(f"setting up {name}..."):
        info = setup_device(name)
    _emit(ctx, info, "key_values", json_path)
