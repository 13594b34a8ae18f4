"""Targets are data: a TOML file names the backend, the device facts and the int8 scheme.

The bundled files live beside this module (so they ship inside the wheel); a user may pass
the path of their own TOML file wherever a target name is accepted. Loading checks the file
against the `Target` type the manifest records (unknown keys, wrong types), and its
`[options]` against the options the target's backend declares.
"""
from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from edgec.errors import InputError
from edgec.package.harness.manifest import ManifestError, Target, from_json, to_json

PRECISIONS = ("fp32", "fp16", "int8")

__all__ = ["PRECISIONS", "Target", "available", "describe", "load_target"]


def _bundled() -> dict[str, Path]:
    folder = resources.files(__package__)
    return {Path(str(f)).stem: Path(str(f)) for f in folder.iterdir() if str(f).endswith(".toml")}


def available() -> list[Target]:
    """Every bundled target, sorted by name."""
    return [load_target(name) for name in sorted(_bundled())]


def load_target(name_or_path: str) -> Target:
    """Read a bundled target by name, or a user's TOML file by path."""
    from edgec import options

    bundled = _bundled()
    path = bundled.get(name_or_path)
    if path is None:
        candidate = Path(name_or_path)
        if candidate.suffix != ".toml" or not candidate.exists():
            raise InputError(
                f"unknown target '{name_or_path}': choose one of {', '.join(sorted(bundled))} "
                "(see `edgec targets`) or pass the path of a target .toml file"
            )
        path = candidate
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"target file {path} is not valid TOML: {exc}") from exc
    data.setdefault("name", path.stem)
    data.setdefault("precisions", [data.get("precision", "fp32")])
    try:
        target = from_json(Target, data, f"target file {path}")
    except ManifestError as exc:
        raise InputError(str(exc)) from None
    unknown = sorted(set(target.precisions) - set(PRECISIONS))
    if unknown or target.precision not in target.precisions:
        raise InputError(f"target file {path}: precisions must be among {', '.join(PRECISIONS)} and include "
                         f"the default precision '{target.precision}'")
    target.options = options.check_defaults(target, target.options, f"target file {path}")
    return target


def describe(target: Target) -> dict:
    """A target as `edgec targets` shows it, with every option it takes."""
    from edgec import options

    data = to_json(target)
    data["options"] = [o.describe(target.options.get(o.name)) for o in options.declared(target)]
    return data
