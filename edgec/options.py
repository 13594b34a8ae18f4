"""Build options as declarations: each backend, and the shared int8 engine, says what it takes.

An `Option` is a name, a type, a default and a help line (Olive's per-pass config schema). The
CLI makes its flags from them, a target TOML's `[options]` table may set their defaults, and a
build refuses an option its target does not take, naming the targets that do. A backend reads
the values as attributes: `ctx.options.io_layout`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from edgec.errors import InputError, UnsupportedError


@dataclass(frozen=True)
class Option:
    name: str  # the attribute name; the flag is --name-with-dashes unless `flag` says otherwise
    type: type
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    flag: str = ""

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value: Any, where: str) -> Any:
        """The value, type-checked; a wrong type, a choice outside `choices` or a value below `minimum` is refused."""
        if value is None:
            return None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise InputError(f"{where}: {self.name} must be {self.type.__name__}, got {value!r}")
        if self.choices and value not in self.choices:
            raise InputError(f"{where}: {self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"{where}: {self.name} must be at least {self.minimum:g}, got {value!r}")
        return value

    def describe(self, default: Any = None) -> dict:
        """What `edgec targets --json` says about this option (with the target's own default)."""
        return {"name": self.name, "flag": self.cli_flag, "type": self.type.__name__, "help": self.help,
                "default": self.default if default is None else default, "choices": list(self.choices)}


# Taken by every target: how an image folder becomes inputs (calibration, samples).
COMMON = (
    Option("preprocess", str, None, "image-folder calibration: size=224,mean=0.485/0.456/0.406,"
           "std=0.229/0.224/0.225,scale=255,order=rgb,layout=nchw"),
    Option("output_kind", str, None, "what outputs mean, judged by verification: NAME=KIND[,NAME=KIND] with KIND "
           "probabilities, logits, embeddings, masks, boxes, integers or tensor (default: read from the graph)"),
    Option("tolerance", str, None, "verification limits of your own, looser or tighter than edgec's: "
           "KIND.MEASURE=LIMIT[,...], e.g. logits.top1_agreement=0.9"),
)
# Taken by every target that builds int8: the shared quantization engine's settings.
INT8 = (
    Option("calibration_method", str, "auto", "how int8 activation ranges are chosen; auto judges minmax, "
           "percentile, entropy and mean-minmax (each run's min and max, averaged) on held-back calibration "
           "samples against fp32 and keeps the most faithful",
           choices=("auto", "minmax", "percentile", "entropy", "mean-minmax")),
    Option("bias_correction", str, "auto", "whether each int8 layer's bias takes back its weights' mean rounding "
           "shift; auto judges both on held-back calibration samples against fp32 and keeps the more faithful",
           choices=("auto", "on", "off")),
    Option("int8_scheme", str, "auto", "which of the target's int8 scheme candidates to use; auto measures "
           "each (fidelity and speed) and keeps the most faithful unless another is 10 % faster at equal fidelity"),
    Option("calibration_samples", int, None, "calibrate on the first N samples of the calibration data "
           "(default: all of them)", minimum=1),
    Option("max_accuracy_drop", float, None, "keep the most harmful layers in float until the accuracy drop "
           "is at most X percentage points", minimum=0.0),
    Option("strict_precision", bool, False, "refuse (exit 2, naming the worst layers) an int8 build that does "
           "not verify, instead of keeping its most harmful layers float"),
    Option("eval_data", str, None, ".npz with inputs (and optionally 'labels') to measure the accuracy drop on",
           flag="--eval"),
)


def declared(target) -> tuple[Option, ...]:
    """Every option `target` takes: the common ones, the int8 engine's when it builds int8, its backend's."""
    from edgec.backends import REGISTRY

    if target.backend not in REGISTRY:
        raise InputError(f"target {target.name}: unknown backend '{target.backend}' "
                         f"(edgec has {', '.join(sorted(REGISTRY))})")
    return COMMON + (INT8 if "int8" in target.precisions else ()) + REGISTRY[target.backend].options


def every_option() -> dict[str, Option]:
    """All declared options by name (a name means the same option for every backend)."""
    from edgec.backends import REGISTRY

    found: dict[str, Option] = {}
    for option in COMMON + INT8 + tuple(o for entry in REGISTRY.values() for o in entry.options):
        found.setdefault(option.name, option)
    return found


def check_defaults(target, values: dict, where: str) -> dict:
    """A target TOML's `[options]`: every key an option the target takes, every value of its type."""
    options = {o.name: o for o in declared(target)}
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise InputError(f"{where}: [options] {unknown[0]} is not an option of the {target.backend} backend "
                         f"(it takes {', '.join(sorted(options))})")
    return {name: options[name].check(value, f"{where}: [options]") for name, value in values.items()}


def resolve(target, given: dict):
    """The values of every option `target` takes: declared default, then the target's, then `given`.

    An option given for a target that does not take it is refused (exit 2), naming the targets that do.
    """
    options = declared(target)
    names = {o.name for o in options}
    for name, value in given.items():
        if name not in names:
            raise UnsupportedError(_not_taken(name, target))
    values = {o.name: o.default for o in options}
    values.update(target.options)
    values.update({k: v for k, v in given.items() if v is not None})
    checked = {o.name: o.check(values[o.name], o.cli_flag) for o in options}
    return _options_class(tuple(o.name for o in options))(**checked)


@functools.lru_cache(maxsize=None)
def _options_class(names: tuple[str, ...]) -> type:
    """One frozen dataclass per set of option names: making a class costs milliseconds, and a build resolves
    its options for every target it considers."""
    return make_dataclass("Options", [(name, Any, field(default=None)) for name in names], frozen=True)


def _not_taken(name: str, target) -> str:
    from edgec.targets import available

    option = every_option().get(name)
    flag = option.cli_flag if option else name
    takers = [t.name for t in available() if any(o.name == name for o in declared(t))]
    return (f"target {target.name} does not take {flag}"
            + (f"; targets that take it: {', '.join(takers)}" if takers else "; no target takes it"))
