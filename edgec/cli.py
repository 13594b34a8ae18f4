"""The edgec command line: parse options, call edgec.api, print tables or JSON. No logic here.

Exit codes: 0 success · 1 a bug in edgec · 2 refused (input, model or option) · 3 built or ran
but not faithful · 4 integrity failure · 5 the runtime is missing on the device.
"""
from __future__ import annotations

import json

import click

from edgec.errors import EdgecError, InputError
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
                _check_json_path(ctx)
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


def _check_json_path(ctx) -> None:
    """--json FILE is checked before any work: writable, not an input, and an existing file replaced only
    with --force (the command's own, or the one `json_output` adds)."""
    from edgec import outputs

    params = ctx.params
    inputs = tuple(params[name] for name in ("source", "artifact", "weights", "calibration", "samples")
                   if params.get(name))
    force = params.get("force", ctx.meta.get(REPLACE_JSON, False))
    outputs.check_file(params.get("json_path"), force, inputs)


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
        from edgec.report import tables
        from edgec.report.console import console_for

        getattr(tables, render)(console_for(terminal.stdout), data)


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
REPLACE_JSON = "edgec.replace_json"


def json_output(command):
    """--json FILE, with a --force that allows replacing it, for commands that have no --force of their own."""
    force = click.option("--force", is_flag=True, expose_value=False, help="replace the --json FILE if it exists",
                         callback=lambda ctx, _param, value: ctx.meta.__setitem__(REPLACE_JSON, value))
    return JSON_OPTION(force(command))


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
        kind = {"is_flag": True, "flag_value": True} if option.type is bool else {"type": _click_type(option)}
        command = click.option(option.cli_flag, option.name, default=None, **kind,
                               help=f"{option.help} ({takers[option.name]}{default})")(command)
    return command


def device_options(command):
    """--device (repeatable), --fleet and the ssh options; the command gets `devices`, a list of DeviceSpec."""
    flags = [
        click.option("-d", "--device", "urls", multiple=True, metavar="DEVICE",
                     help="local, rpi4-emulated, rpi5-emulated or ssh://user@host[:port][/dir] (repeatable: "
                          "runs on all at once; default: the target's device)"),
        click.option("--fleet", "fleet_file", metavar="FILE.toml", help="also run on the [[device]] list in FILE"),
        click.option("--identity", type=click.Path(exists=True, dir_okay=False), help="ssh: the private key"),
        click.option("--known-hosts", type=click.Path(dir_okay=False), help="ssh: the known_hosts file (default: yours)"),
        click.option("--remote-python", default="python3", show_default=True, help="ssh: the device's Python"),
        click.option("--accept-new-host-key", is_flag=True, help="ssh: record an unknown host's key on first contact"),
        click.option("--keep-remote", is_flag=True, help="ssh: keep the artifact's copy on the device"),
        click.option("--offline-wheels", type=click.Path(exists=True, file_okay=False),
                     help="ssh: install the runtime from the wheels in DIR, sent to the device (no internet there)"),
    ]

    def wrapper(*args, urls, fleet_file, identity, known_hosts, remote_python, accept_new_host_key, keep_remote,
                offline_wheels, **kwargs):
        from pathlib import Path

        from edgec.runners import SshOptions
        from edgec.runners.fleet import device_specs

        if "name" in kwargs:  # `edgec device probe NAME`: the device named as an argument
            name = kwargs.pop("name")
            urls = (name,) * bool(name) + urls
        ssh = SshOptions(Path(identity) if identity else None, Path(known_hosts) if known_hosts else None,
                         remote_python, accept_new_host_key, keep_remote,
                         Path(offline_wheels) if offline_wheels else None)
        return command(*args, devices=device_specs(urls, fleet_file, ssh), **kwargs)

    import functools

    wrapper = functools.update_wrapper(wrapper, command)
    for flag in reversed(flags):
        wrapper = flag(wrapper)
    return wrapper


def compression_options(command):
    """The options that describe a compression, shared by `compress` and `build`."""
    options = [
        click.option("--prune", metavar="KIND:AMOUNT[:global]",
                     help="channels:RATIO removes that fraction of each layer's output channels; weights:SPARSITY "
                          "zeroes that fraction of the weights; ':global' ranks all layers together"),
        click.option("--importance", type=click.Choice(["l1", "bn", "taylor"]), default="l1", show_default=True,
                     help="how channels are ranked for --prune channels"),
        click.option("--keep-layer", "keep_layers", multiple=True, metavar="LAYER",
                     help="a layer to leave whole (repeatable)"),
        click.option("--low-rank", type=float, metavar="ENERGY",
                     help="factorize layers by truncated SVD keeping this fraction of singular-value energy, e.g. 0.9"),
        click.option("--distill", is_flag=True, help="train the compressed model to match the original (the teacher)"),
        click.option("--train-data", metavar="DATA.npz", help="distillation inputs keyed by input name; 'labels' optional"),
        click.option("--epochs", type=int, default=10, show_default=True, help="distillation epochs"),
        click.option("--temperature", type=float, default=1.0, show_default=True, help="distillation temperature"),
        click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True, help="distillation learning rate"),
        click.option("--batch-size", type=int, default=32, show_default=True, help="distillation batch size"),
        click.option("--student", metavar="model.py:Class", help="distill into your own smaller architecture"),
        click.option("--seed", type=int, default=0, show_default=True, help="seed of pruning and training"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


COMPRESSION_KEYS = ("prune", "importance", "keep_layers", "low_rank", "distill", "train_data", "epochs", "temperature",
                    "learning_rate", "batch_size", "student", "seed")


def _plan(options: dict, calibration: str | None = None):
    """The compression plan from the shared options (removed from `options`); None when none asks for one."""
    from edgec.compress.plan import Plan

    return Plan.from_options(**{key: options.pop(key) for key in COMPRESSION_KEYS}, calibration=calibration)


def _progress(console):
    """A progress bar over distillation epochs showing the loss and the agreement with the teacher."""
    from rich.progress import BarColumn, Progress, TextColumn

    bar = Progress(TextColumn("distilling epoch {task.completed}/{task.total}"), BarColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}  teacher agreement {task.fields[agreement]:.1%}"),
                   console=console, transient=True)
    state = {}

    def update(epoch, epochs, loss, agreement):
        if "task" not in state:
            bar.start()
            state["task"] = bar.add_task("distill", total=epochs, loss=0.0, agreement=0.0)
        bar.update(state["task"], completed=epoch, loss=loss, agreement=agreement)
        if epoch == epochs:
            bar.stop()

    return update


@main.command(cls=EdgecCommand)
@click.argument("source")
@click.option("-o", "--output", required=True, metavar="OUT.onnx",
              help="the compressed ONNX model to write; its report goes beside it as OUT.compress.json")
@compression_options
@click.option("--calibration", metavar="DATA.npz",
              help="data to re-estimate BatchNorm statistics on after pruning (default: --train-data)")
@click.option("--eval", "eval_data", metavar="DATA.npz",
              help="inputs and optional 'labels': accuracy, or top-1 agreement with the original")
@click.option("-t", "--target", "targets", multiple=True,
              help="build both models for this target and compare their latency (repeatable)")
@click.option("-d", "--device", default=None, help="where to time them (default: each target's device)")
@click.option("--precision", type=PRECISION, default="fp32", show_default=True, help="precision of those builds")
@click.option("--bench-calibration", metavar="PATH", help="int8 calibration data for those builds")
@click.option("--iters", default=50, show_default=True, help="benchmark iterations per round")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...")
@click.option("--weights", metavar="FILE", help="state_dict for a PyTorch model.py:Class source")
@click.option("--force", is_flag=True, help="replace the output if it exists")
@TRUST_OPTION
@JSON_OPTION
@common_flags
@click.pass_context
def compress(ctx, source, output, calibration, eval_data, targets, device, precision, bench_calibration, iters,
             input_shapes, weights, force, trust_code, json_path, **options):
    """Prune, factorize and distill SOURCE into a smaller ONNX model, and measure what it gained.

    \b
      edgec compress model.onnx -o small.onnx --prune channels:0.5 --distill --train-data train.npz --eval test.npz
      edgec compress model.onnx -o small.onnx --low-rank 0.9 -t onnxruntime -t tflite-arm
    """
    from edgec import api
    from edgec.compress.report import Latency

    plan = _plan(options, calibration)
    if plan is None:
        raise InputError("nothing to do: pass --prune, --low-rank or --distill")
    report = api.compress(source, output, plan, input_shapes=input_shapes, weights=weights, eval_data=eval_data,
                          latency=Latency(targets, device, precision, bench_calibration, iters), force=force,
                          progress=_progress(_terminal(ctx).console), trust_code=_trusted(source, trust_code))
    _emit(ctx, report, "compress", json_path)


def _read_config(ctx, param, value):
    """--config FILE: its values become the defaults of the other flags (given flags win)."""
    if value:
        from edgec import config

        try:
            ctx.default_map = {**(ctx.default_map or {}), **config.load(value)}
        except EdgecError as exc:
            ctx.find_root().ensure_object(dict)["config_error"] = exc
    return value


# compare and tune measure on one device (ssh options: edgec verify/bench --device)
DEVICE_OPTION = click.option("-d", "--device", default=None,
                             help="local, rpi4-emulated, rpi5-emulated or ssh://user@host (default: the target's device)")


@main.command(cls=EdgecCommand)
@click.argument("source", required=False)
@click.option("--config", "config_file", metavar="FILE.toml", is_eager=True, callback=_read_config,
              help="build flags from a TOML file whose keys are the flags' names (written by --precision auto "
                   "and edgec tune); flags given here win")
@click.option("-t", "--target", default="onnxruntime", show_default=True,
              help="target name (see `edgec targets`), path of a target .toml, or auto (the one --device suggests)")
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
@click.option("--force", is_flag=True, help="replace the output folder if edgec wrote it (or it is empty)")
@TRUST_OPTION
@device_options
@compression_options
@JSON_OPTION
@common_flags
@click.pass_context
def build(ctx, source, config_file, target, output, precision, calibration, samples, input_shapes, const_inputs,
          weights, force, trust_code, devices, json_path, **options):
    """Compile SOURCE (an .onnx file, model.py:Class, .pt2, .keras, .h5 or SavedModel) for a target.

    A PyTorch model.py is imported and a .pt2 is unpickled: both run code, so both need --trust-code.
    """
    from edgec import api
    from edgec.errors import InputError
    from edgec.package.harness.manifest import to_json

    if ctx.find_root().obj.get("config_error"):
        raise ctx.find_root().obj["config_error"]
    if not source or not output:
        raise InputError(f"edgec build needs {'SOURCE' if not source else '-o OUT'} (or a --config file that sets it)")
    compression = _plan(options)
    options = {k: v for k, v in options.items() if v is not None}
    device = api.one_device(devices)
    with _terminal(ctx).status("building..."):
        if precision == "auto":
            from edgec.choice import auto

            artifact = auto.build(source, target, output, device=device, calibration=calibration, options=options,
                                  input_shapes=input_shapes, weights=weights, const_inputs=const_inputs,
                                  samples=samples, force=force, trust_code=_trusted(source, trust_code))
        else:
            artifact = api.build(source, target, output, precision=precision, input_shapes=input_shapes,
                                 const_inputs=const_inputs, weights=weights, calibration=calibration,
                                 samples=samples, force=force, options=options, device=device,
                                 compression=compression, trust_code=_trusted(source, trust_code))
    _emit(ctx, to_json(artifact.manifest), "build_summary", json_path)
    if not artifact.verified:
        _terminal(ctx).print(f"edgec: the artifact does not match the source model: it is in {artifact.path}")
        ctx.exit(ExitCode.NOT_FAITHFUL)


@main.command(cls=EdgecCommand)
@click.argument("source")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...")
@click.option("--weights", metavar="FILE")
@TRUST_OPTION
@json_output
@common_flags
@click.pass_context
def inspect(ctx, source, input_shapes, weights, trust_code, json_path):
    """Describe a model (I/O, operators, parameters, MACs, target coverage) or an artifact."""
    from edgec import api

    _emit(ctx, api.inspect(source, input_shapes, weights, _trusted(source, trust_code)), "inspect", json_path)


def _on_devices(ctx, command: str, devices, action, render: str, json_path):
    """One device: its own table. Several: one row each, run at once; exit with the worst code."""
    from edgec import api

    if len(devices) <= 1:
        with _terminal(ctx).status(f"{command}..."):
            report = action(devices[0] if devices else None)
        _emit(ctx, report, render, json_path)
        return report
    with _terminal(ctx).status(f"{command} on {len(devices)} devices..."):
        rows = api.on_fleet(action, devices)
    _emit(ctx, {"command": command, "devices": rows}, "fleet", json_path)
    ctx.exit(max(row["exit_code"] for row in rows))


TRUSTED_KEY_OPTION = click.option("--trusted-key", metavar="PUB.pem",
                                  help="run the artifact only if its manifest is signed by this Ed25519 key")


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@device_options
@TRUSTED_KEY_OPTION
@json_output
@common_flags
@click.pass_context
def verify(ctx, artifact, devices, trusted_key, json_path):
    """Run the artifact's samples on a device and compare with the expected outputs (exit 3 if they differ)."""
    from edgec import api

    report = _on_devices(ctx, "verify", devices, lambda d: api.verify(artifact, d, trusted_key), "verify", json_path)
    if not report["passed"]:
        ctx.exit(ExitCode.NOT_FAITHFUL)


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@device_options
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--iters", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", type=click.IntRange(min=1), help="runtime threads (default: the target's)")
@TRUSTED_KEY_OPTION
@json_output
@common_flags
@click.pass_context
def bench(ctx, artifact, devices, warmup, iters, threads, trusted_key, json_path):
    """Measure latency percentiles, throughput, load time and peak memory on a device."""
    from edgec import api

    _on_devices(ctx, "bench", devices, lambda d: api.bench(artifact, d, warmup, iters, threads, trusted_key), "bench", json_path)


@main.command(cls=EdgecCommand)
@click.argument("artifact")
@device_options
@click.option("--iters", default=20, show_default=True, type=click.IntRange(min=1))
@TRUSTED_KEY_OPTION
@json_output
@common_flags
@click.pass_context
def profile(ctx, artifact, devices, iters, trusted_key, json_path):
    """Per-layer times of the artifact on a device, where the runtime offers them."""
    from edgec import api

    _on_devices(ctx, "profile", devices, lambda d: api.profile(artifact, d, iters, trusted_key), "profile", json_path)


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
@json_output
@common_flags
@click.pass_context
def targets(ctx, json_path):
    """List the bundled targets, what each supports and the options each takes."""
    from edgec import api

    _emit(ctx, {"targets": api.targets()}, "targets", json_path)


@main.group()
def device():
    """Prepare and probe the devices that verify and bench run on."""


@device.command("setup", cls=EdgecCommand)
@click.argument("name")
@json_output
@common_flags
@click.pass_context
def device_setup(ctx, name, json_path):
    """Install what an emulated device needs (qemu, an aarch64 Python); cached, safe to repeat."""
    from edgec.runners.emulated import setup_device

    with _terminal(ctx).status(f"setting up {name}..."):
        info = setup_device(name)
    _emit(ctx, info, "key_values", json_path)


@device.command("probe", cls=EdgecCommand)
@click.argument("name", required=False)
@device_options
@json_output
@common_flags
@click.pass_context
def device_probe(ctx, devices, json_path):
    """What a device is (CPU, ISA features, cores, memory, OS, Python, runtimes) and the target that suits it.

    NAME is local, rpi4-emulated, rpi5-emulated or ssh://user@host (or give --device/--fleet)."""
    from edgec import api

    _on_devices(ctx, "probe", devices, api.probe, "probe", json_path)


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
@TRUST_OPTION
@JSON_OPTION
@common_flags
@click.pass_context
def compare(ctx, source, target_list, precision_list, output, device, eval_data, calibration, max_accuracy_drop,
            input_shapes, weights, iters, html_path, force, trust_code, json_path):
    """Build SOURCE for several targets and precisions, measure each on the device, mark the Pareto front."""
    from edgec.choice.compare import compare as run_compare
    from edgec.package.harness.manifest import to_json

    with _terminal(ctx).status("comparing..."):
        result = run_compare(source, _names(target_list), _names(precision_list), output, device=device,
                             eval_data=eval_data, calibration=calibration, max_accuracy_drop=max_accuracy_drop,
                             input_shapes=input_shapes, weights=weights, iters=iters, force=force,
                             trust_code=_trusted(source, trust_code))
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
@TRUST_OPTION
@json_output
@common_flags
@click.pass_context
def tune(ctx, source, target, output, device, eval_data, calibration, trials, objective, max_accuracy_drop, storage,
         study_name, input_shapes, weights, iters, trust_code, json_path):
    """Search the build flags with Optuna for the fastest (and smallest) build within an accuracy budget."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from edgec.choice.tune import Tuner
    from edgec.package.harness.manifest import to_json
    from edgec.report.tables import trial_line

    with _terminal(ctx).status("opening the study..."):
        tuner = Tuner(source, target, output, evaluation_data=eval_data, trials=trials,
                      objectives=tuple(_names(objective)), max_accuracy_drop=max_accuracy_drop, device=device,
                      calibration=calibration, storage=storage, study_name=study_name, input_shapes=input_shapes,
                      weights=weights, iters=iters, trust_code=_trusted(source, trust_code))
    with Progress(TextColumn("tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  console=_terminal(ctx).console) as progress:
        task = progress.add_task("", total=trials)

        def on_trial(number, candidate):
            progress.console.print(trial_line(number, to_json(candidate)), highlight=False)
            progress.advance(task)

        result = tuner.run(on_trial)
    _emit(ctx, to_json(result), "tuning", json_path)
