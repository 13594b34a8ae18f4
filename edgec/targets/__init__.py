"""Targets are data: a TOML file names the backend, the device facts and the int8 scheme.

The bundled files live beside this module (so they ship inside the wheel); a user may pass
the path of their own TOML file wherever a target name is accepted.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from edgec.errors import InputError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    description: str = ""
    arch: str = "any"
    cpu: str = ""
    device: str = "local"
    precision: str = "fp32"
    precisions: tuple[str, ...] = ("fp32",)
    threads: int = 2
    static_shapes: bool = False
    quantization: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "backend": self.backend,
            "description": self.description,
            "arch": self.arch,
            "cpu": self.cpu,
            "device": self.device,
            "precision": self.precision,
            "precisions": list(self.precisions),
            "threads": self.threads,
            "quantization": self.quantization,
            "options": self.options,
        }


def _bundled() -> dict[str, Path]:
    folder = resources.files(__package__)
    return {Path(str(f)).stem: Path(str(f)) for f in folder.iterdir() if str(f).endswith(".toml")}


def available() -> list[Target]:
    """Every bundled target, sorted by name."""
    return [load_target(name) for name in sorted(_bundled())]


def load_target(name_or_path: str) -> Target:
    """Read a bundled target by name, or a user's TOML file by path."""
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
    known = set(Target.__dataclass_fields__) - {"source"}
    unknown = set(data) - known
    if unknown or "backend" not in data:
        raise InputError(
            f"target file {path}: " + (f"unknown keys {sorted(unknown)}" if unknown else "missing 'backend'")
        )
    data.setdefault("name", path.stem)
    data["precisions"] = tuple(data.get("precisions", (data.get("precision", "fp32"),)))
    return Target(**data, source=str(path))
