"""The edgec command line: parse options, call edgec.api, print tables or JSON. No logic here."""
from __future__ import annotations

import json
import sys

import click

from edgec.errors import EdgecError, InputError

PRECISION = click.Choice(["fp32", "fp16", "int8"])


class EdgecGroup(click.Group):
    """Turn EdgecError into one line and exit code 2; other errors exit 1 (traceback with --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgecError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"edgec: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"edgec: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                       err=True)
            sys.exit(1)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _emit(ctx, data: dict, render, json_path: str | None = None):
    """Print `data` as JSON (--json -) or as a rich table, and save JSON to a file if asked."""
    if json_path and json_path != "-":
        with open(json_path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
    if json_path == "-":
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        from edgec.report import tables

        getattr(tables, render)(data)


JSON_OPTION = click.option("--json", "json_path", metavar="FILE",
                           help="also write the result as JSON to FILE ('-' prints JSON instead of a table)")


@click.group(cls=EdgecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show tracebacks for errors")
@click.version_option(package_name="edgec")
@click.pass_context
def main(ctx, debug):
    """edgec compiles trained models for edge devices and proves they run there.

    \b
      edgec build --target tflite-arm model.onnx -o out/
      edgec verify out/ --device rpi4-emulated
      edgec bench out/
    """
    ctx.obj = {"debug": debug}


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


@main.command()
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
@JSON_OPTION
@click.pass_context
def compress(ctx, source, output, calibration, eval_data, targets, device, precision, bench_calibration, iters,
             input_shapes, weights, force, json_path, **options):
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
    console = _console()

    def log(message):
        console.print(f"  {message}", markup=False, highlight=False)

    report = api.compress(source, output, plan, input_shapes=input_shapes, weights=weights, eval_data=eval_data,
                          latency=Latency(targets, device, precision, bench_calibration, iters), force=force, log=log,
                          progress=_progress(console))
    _emit(ctx, report, "compress", json_path)


@main.command()
@click.argument("source")
@click.option("-t", "--target", default="onnxruntime", show_default=True,
              help="target name (see `edgec targets`) or path of a target .toml")
@click.option("-o", "--output", required=True, help="artifact folder to write")
@click.option("--precision", type=PRECISION, help="numeric precision (default: the target's)")
@click.option("--calibration", metavar="PATH",
              help="calibration data for int8: .npz keyed by input name, .npy, an image folder, or 'random'")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...",
              help="fix an input's shape, e.g. input:1,3,224,224 (repeatable)")
@click.option("--const-input", "const_inputs", multiple=True, metavar="NAME=VALUE",
              help="bind a configuration input (a sample rate, a flag) to a constant and fold what depends on it "
                   "(repeatable), e.g. sr=16000")
@click.option("--weights", metavar="FILE", help="state_dict for a PyTorch model.py:Class source (the .py is run as code)")
@click.option("--preprocess", metavar="SPEC",
              help="image-folder calibration: size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,scale=255,"
                   "order=rgb,layout=nchw")
@click.option("--calibration-method", type=click.Choice(["minmax", "percentile", "entropy"]),
              help="how int8 activation ranges are chosen (default minmax)")
@click.option("--quantizer", type=click.Choice(["edgec", "nncf"]),
              help="int8 engine: edgec's own QDQ engine or NNCF (openvino-cpu)")
@click.option("--max-accuracy-drop", type=float, metavar="X",
              help="keep the most harmful layers in float until the accuracy drop is at most X percentage points")
@click.option("--eval", "eval_data", metavar="PATH",
              help=".npz with inputs (and optionally 'labels') to measure the accuracy drop on")
@click.option("--io-layout", type=click.Choice(["nchw", "nhwc"]), help="tflite-arm: the artifact's image layout")
@click.option("--io-dtype", type=click.Choice(["float32", "int8"]), help="tflite-arm: float or integer I/O for int8")
@click.option("--tune-trials", type=int, metavar="N", help="tvm: MetaSchedule tuning trials (0: untuned)")
@click.option("--tuning-db", metavar="PATH", help="tvm: tuning database folder to reuse and extend")
@click.option("--force", is_flag=True, help="replace the output folder if it exists")
@compression_options
@JSON_OPTION
@click.pass_context
def build(ctx, source, target, output, precision, calibration, input_shapes, const_inputs, weights, force, json_path,
          **options):
    """Compile SOURCE (an .onnx file, model.py:Class, .pt2, .keras, .h5 or SavedModel) for a target.

    A PyTorch model.py is imported and run as Python code: build only sources you trust.
    """
    from edgec import api

    compression = _plan(options)
    options = {k: v for k, v in options.items() if v is not None}

    console = _console()
    with console.status("building...") as status:
        def log(message):
            console.print(f"  {message}", markup=False, highlight=False)

        manifest = api.build(source, target, output, precision=precision, input_shapes=input_shapes,
                             const_inputs=const_inputs, weights=weights, calibration=calibration, force=force,
                             options=options, compression=compression, log=log)
        status.stop()
    _emit(ctx, manifest, "build_summary", json_path)
    if not manifest["verification"]["passed"]:
        sys.exit(1)


@main.command()
@click.argument("source")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...")
@click.option("--weights", metavar="FILE")
@JSON_OPTION
@click.pass_context
def inspect(ctx, source, input_shapes, weights, json_path):
    """Describe a model (I/O, operators, parameters, MACs, target coverage) or an artifact."""
    from edgec import api

    _emit(ctx, api.inspect(source, input_shapes, weights), "inspect", json_path)


DEVICE_OPTION = click.option("-d", "--device", default=None,
                             help="local, rpi4-emulated, rpi5-emulated or ssh://user@host (default: the target's device)")


@main.command()
@click.argument("artifact")
@DEVICE_OPTION
@JSON_OPTION
@click.pass_context
def verify(ctx, artifact, device, json_path):
    """Run the artifact's samples on a device and compare with the expected outputs."""
    from edgec import api

    report = api.verify(artifact, device)
    _emit(ctx, report, "verify", json_path)
    sys.exit(0 if report["passed"] else 1)


@main.command()
@click.argument("artifact")
@DEVICE_OPTION
@click.option("--warmup", default=10, show_default=True)
@click.option("--iters", default=100, show_default=True)
@click.option("--threads", type=int, help="runtime threads (default: the target's)")
@JSON_OPTION
@click.pass_context
def bench(ctx, artifact, device, warmup, iters, threads, json_path):
    """Measure latency percentiles, throughput, load time and peak memory on a device."""
    from edgec import api

    _emit(ctx, api.bench(artifact, device, warmup, iters, threads), "bench", json_path)


@main.command()
@click.argument("artifact")
@DEVICE_OPTION
@click.option("--iters", default=20, show_default=True)
@JSON_OPTION
@click.pass_context
def profile(ctx, artifact, device, iters, json_path):
    """Per-layer times of the artifact on a device, where the runtime offers them."""
    from edgec import api

    _emit(ctx, api.profile(artifact, device, iters), "profile", json_path)


@main.command()
@JSON_OPTION
@click.pass_context
def targets(ctx, json_path):
    """List the bundled targets and what each supports."""
    from edgec import api

    _emit(ctx, {"targets": api.targets()}, "targets", json_path)


@main.group()
def device():
    """Prepare devices that verify and bench can run on."""


@device.command("setup")
@click.argument("name")
@JSON_OPTION
@click.pass_context
def device_setup(ctx, name, json_path):
    """Install what an emulated device needs (qemu, an aarch64 Python); cached, safe to repeat."""
    from edgec.runners.emulated import setup_device

    _emit(ctx, setup_device(name), "key_values", json_path)
