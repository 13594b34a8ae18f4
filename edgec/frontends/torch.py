"""PyTorch frontend: `model.py:Class` (+ a state_dict) or a saved `torch.export` program (.pt2).

Both go through `torch.onnx.export(..., dynamo=True)`, whose result already is an onnx_ir
Model. Export is static at the shapes given (edge targets want static shapes). A model.py
is the user's own code: it is imported and run as such.
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import onnx_ir as ir

from edgec.errors import InputError, UnsupportedError, require
from edgec.system import first_line
from edgec.ir import InputSpec

SHOWN_KEYS = 3  # how many mismatching state_dict keys an error names


def load(source: str, specs: list[InputSpec], weights: str | None = None) -> ir.Model:
    """Export `source` to the common IR; the ONNX inputs are named as in `specs`."""
    torch = require("torch", "torch")
    if source.endswith(".pt2"):
        if weights:
            raise InputError("--weights is for model.py:Class sources; a .pt2 program already holds its weights")
        return _from_program(torch, Path(source), specs)
    module = instantiate(source, weights)
    class_name = type(module).__name__
    names, required = _forward_parameters(module)
    given = {s.name for s in specs}
    unknown = sorted(given - set(names))
    if unknown:
        raise InputError(
            f"--input-shape names '{unknown[0]}', but {class_name}.forward() takes: {', '.join(names)}"
        )
    if not set(required) <= given:
        example = " ".join(f"--input-shape {n}:D1,D2,..." for n in required if n not in given)
        raise InputError(f"{class_name} needs the shape of each forward() input: pass {example}")
    kwargs = {s.name: torch.zeros(s.shape) for s in specs}
    return _export(torch, module.eval(), kwargs, class_name)


def instantiate(source: str, weights: str | None = None):
    """The user's nn.Module for `model.py:Class`, with its state_dict loaded when `weights` is given."""
    torch = require("torch", "torch")
    path, class_name = _split(source)
    module = _instantiate(torch, path, class_name)
    if weights:
        _load_weights(torch, module, class_name, Path(weights))
    return module


def export(module, args: tuple, label: str, dynamic_batch: bool = False) -> ir.Model:
    """Export a module called with positional `args`; `dynamic_batch` keeps dimension 0 of every input free."""
    torch = require("torch", "torch")
    dynamic = tuple({0: torch.export.Dim("batch")} for _ in args) if dynamic_batch else None
    return _export(torch, module, None, label, args, dynamic)


def _split(source: str) -> tuple[Path, str]:
    from edgec.frontends import PY_CLASS

    match = PY_CLASS.fullmatch(source)
    if not match or not match["name"].isidentifier():
        raise InputError(f"'{source}': a PyTorch source is path/model.py:ClassName (or a saved .pt2 program)")
    if not Path(match["path"]).is_file():
        raise InputError(f"model file not found: {match['path']}")
    return Path(match["path"]), match["name"]


def _instantiate(torch, path: Path, class_name: str):
    """Import the user's model.py (its folder on sys.path, for sibling imports) and build Class()."""
    name = f"edgec_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    code = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(code)
    except (Exception, SystemExit) as exc:  # sys.exit() at import is a failed import, not edgec's exit
        raise InputError(f"importing {path} failed: {type(exc).__name__}: {first_line(exc)}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    cls = getattr(code, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        found = sorted(n for n, v in vars(code).items()
                       if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == name)
        raise InputError(
            f"{path} has no nn.Module class '{class_name}'; it defines: {', '.join(found) or 'none'}"
        )
    try:
        return cls()
    except Exception as exc:
        raise InputError(
            f"{class_name}() failed: {type(exc).__name__}: {first_line(exc)} "
            "(edgec builds the class with no arguments: give its parameters defaults)"
        ) from exc


def _load_weights(torch, module, class_name: str, path: Path) -> None:
    """load_state_dict(strict=True), with every kind of mismatch told in one line."""
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise InputError(
            f"{path} is not a state_dict that loads with weights_only=True ({first_line(exc)}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} is not a state_dict (name -> tensor); save it with torch.save(model.state_dict(), path)")
    own = module.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - SHOWN_KEYS} more)" if len(items) > SHOWN_KEYS else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:SHOWN_KEYS])}{more}")
    if problems:
        raise InputError(f"weights {path} do not fit {class_name}: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)


def _forward_parameters(module) -> tuple[list[str], list[str]]:
    """forward()'s tensor parameter names, and those without a default (which need a shape)."""
    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return [p.name for p in params], [p.name for p in params if p.default is p.empty]


def _from_program(torch, path: Path, specs: list[InputSpec]) -> ir.Model:
    """Export a saved ExportedProgram; its example inputs fix the shapes, so specs are optional."""
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        program = torch.export.load(path)
    except Exception as exc:
        raise InputError(f"{path} is not a torch.export program ({first_line(exc)}); save one with torch.export.save") from exc
    model = _export(torch, program, None, path.name)
    static = {v.name: tuple(v.shape) for v in model.graph.inputs
              if v.shape is not None and all(isinstance(d, int) for d in v.shape)}
    for spec in specs:
        if spec.name in static and static[spec.name] != spec.shape:
            fixed = ",".join(map(str, static[spec.name]))
            raise InputError(
                f"{path.name} was exported for {spec.name}:{fixed}; pass that shape, or export it again "
                "with dynamic_shapes for the dimensions you want to choose"
            )
    return model


def _export(torch, model, kwargs: dict | None, label: str, args: tuple = (), dynamic_shapes=None) -> ir.Model:
    """torch.onnx.export (dynamo); the ONNX inputs keep forward()'s parameter names."""
    try:
        program = torch.onnx.export(model, args, kwargs=kwargs, dynamo=True, verbose=False,
                                    dynamic_shapes=dynamic_shapes)
    except Exception as exc:
        raise UnsupportedError(
            f"torch.onnx.export could not export {label}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    return program.model

