"""The common IR: onnx_ir models, loaded and saved with clear errors, and input specs."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx_ir as ir

from edgec.errors import InputError, UnsupportedError
from edgec.system import first_line

# Models above this size keep their weights in an external .data file (protobuf's 2 GB limit).
EXTERNAL_DATA_THRESHOLD = 1 << 30


@dataclass(frozen=True)
class InputSpec:
    """A user's fixed shape for one model input, from `--input-shape name:1,3,224,224`."""

    name: str
    shape: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> "InputSpec":
        match = re.fullmatch(r"\s*(\S.*?)\s*:\s*(\d+(?:\s*[,x]\s*\d+)*)\s*", text)  # names may hold colons
        if not match:
            raise InputError(
                f"malformed --input-shape '{text}': write NAME:D1,D2,..., e.g. input:1,3,224,224"
            )
        dims = tuple(int(d) for d in re.split(r"\s*[,x]\s*", match.group(2)))
        if any(d <= 0 for d in dims):
            raise InputError(f"--input-shape '{text}': every dimension must be a positive integer")
        return cls(match.group(1), dims)


def all_nodes(model: ir.Model) -> Iterator[ir.Node]:
    """Every node of the model: its graph's, its subgraphs' (If, Loop, Scan bodies) and its functions'."""
    yield from ir.traversal.RecursiveGraphIterator(model.graph)
    for function in model.functions.values():
        yield from ir.traversal.RecursiveGraphIterator(function)


def parse_input_specs(texts) -> list[InputSpec]:
    """Every --input-shape, each input named once."""
    specs: dict[str, InputSpec] = {}
    for spec in map(InputSpec.parse, texts):
        if spec.name in specs and specs[spec.name] != spec:
            raise InputError(f"--input-shape gives '{spec.name}' two shapes ({','.join(map(str, specs[spec.name].shape))} "
                             f"and {','.join(map(str, spec.shape))}): give one")
        specs[spec.name] = spec
    return list(specs.values())


def load(path: str | Path) -> ir.Model:
    """Read an ONNX file (external data included) or raise an InputError that says why not."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an ONNX file (SavedModel folders need the tf extra)")
    import onnx

    from edgec.ir.validate import check_proto

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf reports truncation and garbage as assorted errors
        raise InputError(f"{path} is not a readable ONNX model ({first_line(exc)}); "
                         "re-export it or check the download") from exc
    if not proto.graph.output or not proto.graph.node:
        raise InputError(f"{path} is not a valid ONNX model: its graph has no nodes or outputs")
    check_proto(proto, path)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # a name or attribute protobuf accepted but the IR cannot read
        raise InputError(f"{path} is not a valid ONNX model ({first_line(exc)}); re-export it") from exc
    ir.external_data.set_base_dir(model.graph, path.parent)  # locations resolve beside the model
    return model


def save(model: ir.Model, path: str | Path) -> Path:
    """Write a model as one file, or with an external .data file when it is too large for one."""
    path = Path(path)
    tensors = [v.const_value for v in model.graph.initializers.values() if v.const_value is not None]
    external = any(isinstance(t, ir.ExternalTensor) for t in tensors)  # its file stays beside the source only
    if external or sum(t.nbytes for t in tensors) > EXTERNAL_DATA_THRESHOLD:
        ir.save(model, path, external_data=path.name + ".data")
    else:
        ir.save(model, path)
    return path


SNAPSHOT_BYTES = 1 << 28  # weights held in memory above which a snapshot would double them: clone instead


class Snapshot:
    """A model kept as its proto, to be rebuilt when a copy is needed: taking one costs a third of a
    clone (0.6 s against 1.7 s at 16,000 nodes), so it suits copies that are rarely rebuilt, and
    onnxruntime reads its bytes without a file. The proto holds the weights in memory, external ones
    as references that keep resolving against the source model's folder (a bare proto round trip
    would make them relative to the current one); what edgec noted in the values' `meta` is carried
    over too."""

    @classmethod
    def of(cls, model: ir.Model) -> "Snapshot | None":
        """A snapshot, or None where the weights held in memory exceed SNAPSHOT_BYTES (a clone shares them)."""
        tensors = (value.const_value for value in model.graph.initializers.values())
        in_memory = sum(t.nbytes for t in tensors if t is not None and not isinstance(t, ir.ExternalTensor))
        return cls(model) if in_memory <= SNAPSHOT_BYTES else None

    def __init__(self, model: ir.Model):
        self.proto = ir.to_proto(model)
        folders = {t.base_dir for t in (v.const_value for v in model.graph.initializers.values())
                   if isinstance(t, ir.ExternalTensor)}
        self.folder = folders.pop() if folders else None
        self.meta = {value.name: dict(value.meta) for value in _values(model.graph) if value.meta}

    def restore(self) -> ir.Model:
        copy = ir.from_proto(self.proto)
        if self.folder is not None:
            ir.external_data.set_base_dir(copy.graph, self.folder)
        if self.meta:
            for value in _values(copy.graph):
                value.meta.update(self.meta.get(value.name, {}))
        return copy


def _values(graph: ir.Graph) -> Iterator[ir.Value]:
    yield from graph.inputs
    yield from graph.initializers.values()
    for node in graph:
        yield from node.outputs


def clone(model: ir.Model) -> ir.Model:
    """An independent copy (deepcopy recurses too deep on large graphs; a Model.clone shares the weights)."""
    return Snapshot(model).restore()


DECLARED_SHAPE = "edgec.declared_shape"  # an input's shape as the model declared it, before --input-shape


def apply_input_specs(model: ir.Model, specs: list[InputSpec]) -> None:
    """Fix the named inputs' shapes; every name must be a real input of rank-matching shape."""
    inputs = {value.name: value for value in model.graph.inputs}
    for spec in specs:
        value = inputs.get(spec.name)
        if value is None:
            raise InputError(
                f"--input-shape names '{spec.name}', but the model's inputs are: {', '.join(inputs)}"
            )
        if value.shape is not None and len(value.shape) != len(spec.shape):
            raise InputError(
                f"--input-shape {spec.name}: gives {len(spec.shape)} dimensions, the model's input has "
                f"{len(value.shape)} ({format_shape(value.shape)})"
            )
        value.meta.setdefault(DECLARED_SHAPE, value.shape)  # where its batch was, for the samples' batching
        value.shape = ir.Shape(spec.shape)


def resolve_static_shapes(model: ir.Model) -> list[str]:
    """Make every input shape static for targets that need it.

    A symbolic leading (batch) dimension becomes 1 and is reported; any other symbolic
    dimension is an error that names the input and the flag that fixes it.
    """
    notes = []
    for value in model.graph.inputs:
        if value.shape is None:
            raise UnsupportedError(
                f"input '{value.name}' has no known shape; fix it with --input-shape {value.name}:D1,D2,..."
            )
        dims = list(value.shape)
        for axis, dim in enumerate(dims):
            if isinstance(dim, int):
                continue
            if axis == 0:
                dims[0] = 1
                notes.append(f"batch dimension of input '{value.name}' set to 1 (use --input-shape to choose)")
                continue
            example = ",".join(str(d) if isinstance(d, int) else "N" for d in dims)
            raise UnsupportedError(
                f"input '{value.name}' has a symbolic dimension '{dim}' at axis {axis} and this target needs "
                f"static shapes: fix it with --input-shape {value.name}:{example}"
            )
        value.shape = ir.Shape(dims)
    for value in model.graph.outputs:  # a symbolic output dim is stale now, or was wrong (declared rank 2, is 3)
        if value.shape is not None and not value.shape.is_static() and value not in model.graph.inputs:
            value.shape = None  # shape inference computes it from the static inputs
    return notes


def format_shape(shape) -> str:
    if shape is None:
        return "?"
    return "[" + ",".join(str(d) if isinstance(d, int) else str(d) for d in shape) + "]"


def numpy_dtype(value: ir.Value) -> str:
    """The numpy name of a value's element type ('float32', 'int8', ...)."""
    return value.dtype.numpy().name if value.dtype is not None else "unknown"


def io_specs(values) -> list:
    """The TensorSpecs of graph inputs or outputs, as they are: for manifests and tables."""
    from edgec.package.harness.manifest import TensorSpec

    return [TensorSpec(v.name, [d if isinstance(d, int) else str(d) for d in v.shape] if v.shape is not None else None,
                       numpy_dtype(v)) for v in values]
