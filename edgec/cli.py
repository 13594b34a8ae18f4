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


def _read_config(ctx, param, value):
    """--config FILE: its values become the defaults of the other flags (given flags win)."""
    if value:
        from edgec import config

        try:
            ctx.default_map = {**(ctx.default_map or {}), **config.load(value)}
        except EdgecError as exc:
            ctx.find_root().ensure_object(dict)["config_error"] = exc
    return value


@main.command(cls=EdgecCommand)
@click.argument("source", required=False)
@click.option("--config", "config_file", metavar="FILE.toml", is_eager=True, callback=_read_config,
              help="build flags from a TOML file whose keys are the flags' names (written by --precision auto "
                   "and edgec tune); flags given here win")
@click.option("-t", "--target", default="onnxruntime", show_default=True,
              help="target name (see `edgec targets`) or path of a target .toml")
@click.option("-o", "--output", help="artifact folder to write (OUT.unverified if it does not verify)")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "auto"]),
              help="numeric precision (default: the target's); auto: build each, measure on the device, keep "
                   "the fastest within --max-accuracy-drop on --eval")
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
@click.option("-d", "--device", default=None, help="where --precision auto measures (default: the target's device)")
@click.option("--force", is_flag=True, help="replace the output folder if it exists")
@JSON_OPTION
@common_flags
@click.pass_context
def build(ctx, source, config_file, target, output, precision, calibration, samples, input_shapes, const_inputs,
          weights, device, force, json_path, **options):
    """Compile SOURCE (an .onnx file, model.py:Class, .pt2, .keras, .h5 or SavedModel) for a target.

    A PyTorch model.py is imported and run as Python code: build only sources you trust.
    """
    from edgec import api
    from edgec.errors import InputError
    from edgec.package.harness.manifest import to_json

    if ctx.find_root().obj.get("config_error"):
        raise ctx.find_root().obj["config_error"]
    if not source or not output:
        raise InputError(f"edgec build needs {'SOURCE' if not source else '-o OUT'} (or a --config file that sets it)")
    options = {k: v for k, v in options.items() if v is not None}
    with _terminal(ctx).status("building..."):
        if precision == "auto":
            from edgec.choice import auto

            artifact = auto.build(source, target, output, device=device, calibration=calibration, options=options,
                                  input_shapes=input_shapes, weights=weights, const_inputs=const_inputs,
                                  samples=samples, force=force)
        else:
            artifact = api.build(source, target, output, precision=precision, input_shapes=input_shapes,
                                 const_inputs=const_inputs, weights=weights, calibration=calibration,
                                 samples=samples, force=force, options=options)
    _emit(ctx, to_json(artifact.manifest), "build_summary", json_path)
    if not artifact.verified:
        _terminal(ctx).print(f"edgec: the artifact does not match the source model: it is in {artifact.path}")
        ctx.exit(ExitCode.NOT_FAITHFUL)


@main.command(cls=EdgecCommand)
@click.argument("source")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...")
@click.option("--weights", metavar="FILE")
@JSON_OPTION
@common_flags
@click.pass_context
def inspect(ctx, source, input_shapes, weights, json_path):
    """Describe a model (I/O, operators, parameters, MACs, target coverage) or an artifact."""
    from edgec import api

    _emit(ctx, api.inspect(source, input_shapes, weights), "inspect", json_path)


DEVICE_OPTION = click.option("-d", "--device", default=None,
                             help="local, rpi4-emulated, rpi5-emulated or ssh://user@host (default: the target's device)")


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@DEVICE_OPTION
@JSON_OPTION
@common_flags
@click.pass_context
def verify(ctx, artifact, device, json_path):
    """Run the artifact's samples on a device and compare with the expected outputs (exit 3 if they differ)."""
    from edgec import api

    with _terminal(ctx).status("verifying..."):
        report = api.verify(artifact, device)
    _emit(ctx, report, "verify", json_path)
    if not report["passed"]:
        ctx.exit(ExitCode.NOT_FAITHFUL)


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@DEVICE_OPTION
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--iters", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", type=click.IntRange(min=1), help="runtime threads (default: the target's)")
@JSON_OPTION
@common_flags
@click.pass_context
def bench(ctx, artifact, device, warmup, iters, threads, json_path):
    """Measure latency percentiles, throughput, load time and peak memory on a device."""
    from edgec import api

    with _terminal(ctx).status("benchmarking..."):
        report = api.bench(artifact, device, warmup, iters, threads)
    _emit(ctx, report, "bench", json_path)


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@DEVICE_OPTION
@click.option("--iters", default=20, show_default=True, type=click.IntRange(min=1))
@JSON_OPTION
@common_flags
@click.pass_context
def profile(ctx, artifact, device, iters, json_path):
    """Per-layer times of the artifact on a device, where the runtime offers them."""
    from edgec import api

    with _terminal(ctx).status("profiling..."):
        report = api.profile(artifact, device, iters)
    _emit(ctx, report, "profile", json_path)


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


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@main.command(cls=EdgecCommand)
@click.argument("source")
@click.option("--targets", "target_list", required=True, metavar="A,B,...", help="targets to build for")
@click.option("--precisions", "precision_list", default="fp32,int8", show_default=True, metavar="P,Q,...",
              help="precisions to build (each where the target builds it)")
@click.option("-o", "--output", required=True, help="folder for the artifacts (one per row, kept for reuse)")
@DEVICE_OPTION
@click.option("--eval", "eval_data", metavar="DATA.npz",
              help="inputs keyed by input name and optional 'labels': accuracy, else agreement with the source")
@click.option("--calibration", metavar="PATH", help="calibration data for the int8 rows")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0.0),
              help="points below the source model the recommended row may lose (default 1.0)")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...")
@click.option("--weights", metavar="FILE")
@click.option("--iters", default=100, show_default=True, type=click.IntRange(min=1), help="benchmark runs per row")
@click.option("--html", "html_path", metavar="FILE", help="also write the HTML report with Pareto plots")
@click.option("--force", is_flag=True, help="replace the output folder if it exists")
@JSON_OPTION
@common_flags
@click.pass_context
def compare(ctx, source, target_list, precision_list, output, device, eval_data, calibration, max_accuracy_drop,
            input_shapes, weights, iters, html_path, force, json_path):
    """Build SOURCE for several targets and precisions, measure each on the device, mark the Pareto front."""
    from edgec.choice.compare import compare as run_compare
    from edgec.package.harness.manifest import to_json

    with _terminal(ctx).status("comparing..."):
        result = run_compare(source, _names(target_list), _names(precision_list), output, device=device,
                             eval_data=eval_data, calibration=calibration, max_accuracy_drop=max_accuracy_drop,
                             input_shapes=input_shapes, weights=weights, iters=iters, force=force)
    data = to_json(result)
    if html_path:
        from edgec.report import html

        html.write(data, html_path)
    _emit(ctx, data, "comparison", json_path)


@main.command(cls=EdgecCommand)
@click.argument("results")
@click.option("-o", "--output", required=True, metavar="FILE.html", help="the report to write")
@common_flags
@click.pass_context
def report(ctx, results, output):
    """Write the HTML report (Pareto plots, per-layer charts, table) of a compare or tune RESULTS.json."""
    from edgec.report import html

    html.write(html.load(results), output)
    _terminal(ctx).print(f"wrote {output}", err=False)


@main.command(cls=EdgecCommand)
@click.argument("source")
@click.option("-t", "--target", default="onnxruntime", show_default=True, help="target to tune the build for")
@click.option("-o", "--output", required=True, help="folder for the study (study.db), the trials, best.toml, "
              "results.json and report.html; rerun with the same folder to resume")
@DEVICE_OPTION
@click.option("--eval", "eval_data", required=True, metavar="DATA.npz",
              help="inputs keyed by input name and optional 'labels'")
@click.option("--calibration", metavar="PATH", help="calibration data (without it, int8 is not tried)")
@click.option("--trials", type=int, default=12, show_default=True, help="trials this run adds to the study")
@click.option("--objective", default="latency", show_default=True, metavar="latency[,size]",
              help="what to minimize; both: a multi-objective study")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="the constraint: points below the source model a trial may lose")
@click.option("--storage", metavar="URL", help="Optuna RDB storage shared by several workers, e.g. "
              "postgresql://user:pw@host/db (default: sqlite in the output folder)")
@click.option("--study", "study_name", help="study name (default: MODEL-TARGET)")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...")
@click.option("--weights", metavar="FILE")
@click.option("--iters", default=50, show_default=True, type=click.IntRange(min=1), help="benchmark runs per trial")
@JSON_OPTION
@common_flags
@click.pass_context
def tune(ctx, source, target, output, device, eval_data, calibration, trials, objective, max_accuracy_drop, storage,
         study_name, input_shapes, weights, iters, json_path):
    """Search the build flags with Optuna for the fastest (and smallest) build within an accuracy budget."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from edgec.choice.tune import Tuner
    from edgec.package.harness.manifest import to_json
    from edgec.report.tables import trial_line

    with _terminal(ctx).status("opening the study..."):
        tuner = Tuner(source, target, output, evaluation_data=eval_data, trials=trials,
                      objectives=tuple(_names(objective)), max_accuracy_drop=max_accuracy_drop, device=device,
                      calibration=calibration, storage=storage, study_name=study_name, input_shapes=input_shapes,
                      weights=weights, iters=iters)
    with Progress(TextColumn("tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  console=_terminal(ctx).console) as progress:
        task = progress.add_task("", total=trials)

        def on_trial(number, candidate):
            progress.console.print(trial_line(number, to_json(candidate)), highlight=False)
            progress.advance(task)

        result = tuner.run(on_trial)
    _emit(ctx, to_json(result), "tuning", json_path)
