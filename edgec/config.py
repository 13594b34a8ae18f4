"""Build configurations as TOML files whose keys are `edgec build`'s own flags (without the dashes):

    source = "models/digits/digits_cnn.onnx"
    target = "onnxruntime"
    precision = "int8"
    calibration = "models/digits/calibration.npz"
    calibration-method = "percentile"

`edgec build --config FILE` reads one (flags given on the command line win); `--precision auto`
and `edgec tune` write one, so a choice that was measured once is rebuilt without measuring.
"""
from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

from edgec.errors import InputError


# `edgec build`'s own flags by parameter name; the declared options (edgec/options.py) add theirs.
BUILD_FLAGS = {"source": "source", "target": "target", "output": "output", "precision": "precision",
               "calibration": "calibration", "samples": "samples", "input_shapes": "input-shape",
               "const_inputs": "const-input", "weights": "weights", "force": "force"}


def flags() -> dict[str, str]:
    """Every config key (a build flag without its dashes) by the parameter it sets."""
    from edgec.options import every_option

    return BUILD_FLAGS | {o.name: o.cli_flag.removeprefix("--") for o in every_option().values()}


def load(path: str | Path) -> dict[str, Any]:
    """The file's values by parameter name."""
    keys = {flag: name for name, flag in flags().items()}
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise InputError(f"config file not found: {file}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {file} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise InputError(f"config file {file}: '{unknown[0]}' is not an edgec build flag "
                         f"(keys are the flags' names: {', '.join(sorted(keys))})")
    return {keys[key]: value for key, value in data.items()}


def dumps(values: dict[str, Any]) -> str:
    """TOML for flat values by parameter name (strings, numbers, booleans, lists of strings); None is left out."""
    keys, lines = flags(), []
    for name, value in values.items():
        if value is None or value == [] or value == ():
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = "[" + ", ".join(json.dumps(str(v)) for v in value) + "]"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(str(value))  # a JSON string is a TOML basic string
        lines.append(f"{keys[name]} = {text}")
    return "\n".join(lines) + "\n"


def write(path: str | Path, values: dict[str, Any], comment: str = "") -> Path:
    path = Path(path)
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    path.write_text(header + dumps(values))
    return path


def command(values: dict[str, Any]) -> str:
    """The `edgec build` command line that builds the same configuration."""
    keys, words = flags(), ["edgec", "build", str(values["source"])]
    for name, value in values.items():
        if name == "source" or value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            words += [f"--{keys[name]}"] if item is True else [] if item is False else [f"--{keys[name]}", str(item)]
    return shlex.join(words)
