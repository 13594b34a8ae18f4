"""The ONNX node tests, regenerated from the installed onnx package's own generators and cached.

The onnx wheel ships the generators (`onnx.backend.test.case.node`), not the data. Generating
every case takes about 15 s, so the single-node cases of the suite's operators are written once
into `.cache/node_suite/` (ignored), in a folder keyed by the onnx and onnxruntime versions and by
this file and the operator list, and read from there. Generation runs in a fresh Python process
with numpy's global generator seeded first: the generators draw from it as they are imported, so
only a fresh process gives the same data every time (two runs give byte-identical caches).

Each case has two forms:
- `shipped`: the model as onnx ships it, every input fed at run time;
- `const`: every parameter input made a constant initializer, as in real models. The rule: input 0
  is the data a model feeds at run time; every other input (weights, biases, shapes, axes, indices,
  scales, zero points, pads, k, repeats, initial states, the second operand of a binary op) is a
  parameter. Input 0 stays an input so that every model keeps one. A case with one input has one form.

onnx writes each case at its operator's newest opset. Where onnxruntime has no kernel for that
version yet (onnx 1.23 writes QuantizeLinear/DequantizeLinear at opset 28, onnxruntime 1.32 stops at
25), the case is written at the newest opset onnxruntime implements, if onnx's checker accepts the
node there: the node, its inputs and expected outputs stay the generator's.

Run as a script (`python cases.py FOLDER`) it generates the cache into FOLDER.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OPERATORS_FILE = HERE / "operators.txt"
SUITE_FILE = HERE / "suite.txt"
SEED = 0
# Element types edge models carry; cases with any other (float8, int4, bfloat16, strings, ...) are left
# out. float64 stays: exporters leave it in real graphs, and the Einsum and CumSum cases use only it.
EDGE_DTYPES = frozenset({"float64", "float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool"})
SHIPPED, CONST = "shipped", "const"


def read_list(path: Path) -> list[str]:
    """Names from a committed list file: one a line, '#' comments and blank lines ignored."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def cache_dir() -> Path:
    """Keyed by the onnx and onnxruntime versions and by this generator and its operator list."""
    import hashlib

    import onnx
    import onnxruntime

    rules = hashlib.sha256(Path(__file__).read_bytes() + OPERATORS_FILE.read_bytes()).hexdigest()[:10]
    return ROOT / ".cache" / "node_suite" / f"onnx-{onnx.__version__}-ort-{onnxruntime.__version__}-{rules}"


@dataclass(frozen=True)
class NodeCase:
    """One single-node test: its model (both forms), inputs, expected outputs and tolerance."""

    name: str
    op_type: str
    folder: Path
    rtol: float
    atol: float
    inputs: tuple[str, ...]  # the shipped model's inputs, in order
    params: tuple[str, ...]  # the inputs the const form holds as initializers

    @property
    def forms(self) -> tuple[str, ...]:
        return (SHIPPED, CONST) if self.params else (SHIPPED,)

    def model(self, form: str) -> Path:
        return self.folder / f"{form}.onnx"

    def feeds(self, form: str) -> dict[str, np.ndarray]:
        """The run-time inputs of `form`, keyed by input name."""
        arrays = _load_npz(self.folder / "inputs.npz")
        keep = self.inputs if form == SHIPPED else tuple(n for n in self.inputs if n not in self.params)
        return {name: arrays[name] for name in keep}

    def expected(self) -> dict[str, np.ndarray]:
        return _load_npz(self.folder / "expected.npz")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_cases(names: list[str] | None = None) -> list[NodeCase]:
    """The cached cases (generated first if missing), in the order of `names` if given."""
    folder = ensure_cache()
    index = json.loads((folder / "index.json").read_text())
    names = names if names is not None else sorted(index)
    unknown = [n for n in names if n not in index]
    if unknown:
        raise KeyError(f"no node test named {unknown[:5]} in {folder.name}: rewrite the suite (--select)")
    return [NodeCase(name, index[name]["op_type"], folder / name, index[name]["rtol"], index[name]["atol"],
                     tuple(index[name]["inputs"]), tuple(index[name]["params"])) for name in names]


def ensure_cache() -> Path:
    """The cache folder, generated in a fresh process when absent (older caches are removed)."""
    folder = cache_dir()
    if not (folder / "index.json").exists():
        for stale in folder.parent.glob("onnx-*"):  # other versions' or rules' caches
            shutil.rmtree(stale, ignore_errors=True)
        subprocess.run([sys.executable, str(Path(__file__)), str(folder)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
    return folder


def _edge_typed(values) -> bool:
    import onnx

    for value in values:
        if not value.type.HasField("tensor_type"):
            return False
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if np.dtype(dtype).name not in EDGE_DTYPES:
            return False
    return True


def _const_form(model, params: dict[str, np.ndarray]):
    """A copy of `model` whose `params` inputs are initializers."""
    import onnx
    from onnx import numpy_helper

    const = onnx.ModelProto()
    const.CopyFrom(model)
    kept = [v for v in const.graph.input if v.name not in params]
    del const.graph.input[:]
    const.graph.input.extend(kept)
    const.graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in params.items())
    return const


def _runnable_opset(model) -> None:
    """Lower the model's opset to the newest version of its operator that onnxruntime loads and onnx's
    checker accepts, when onnxruntime cannot load it as written."""
    import onnx

    if _loads(model):
        return
    opset = next(o for o in model.opset_import if o.domain in ("", "ai.onnx"))
    op_type, written = model.graph.node[0].op_type, opset.version
    versions = sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history()
                       if s.name == op_type and s.domain == "" and s.since_version < written}, reverse=True)
    for version in versions:
        opset.version = version
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
            break  # the node uses something older versions lack
        if _loads(model):
            return
    opset.version = written


def _loads(model) -> bool:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - any failure to load means: try an older opset
        return False
    return True


def _as_array(value) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else np.asarray(value)


def _generate(folder: Path) -> None:
    """Write every single-node case of the suite's operators with edge dtypes into `folder`."""
    np.random.seed(SEED)  # before the generators are imported: they draw as they import
    import onnx
    from onnx.backend.test.case import node

    operators = set(read_list(OPERATORS_FILE))
    staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    index = {}
    for case in node.collect_testcases():
        graph = case.model.graph
        if "_expanded" in case.name or len(graph.node) != 1 or graph.node[0].op_type not in operators:
            continue
        if not (_edge_typed(graph.input) and _edge_typed(graph.output)):
            continue
        (inputs, outputs), = case.data_sets
        feeds = {v.name: _as_array(x) for v, x in zip(graph.input, inputs)}
        expected = {v.name: _as_array(y) for v, y in zip(graph.output, outputs)}
        params = [v.name for v in graph.input[1:]]
        _runnable_opset(case.model)
        target = staging / case.name
        target.mkdir()
        onnx.save(case.model, target / f"{SHIPPED}.onnx")
        if params:
            onnx.save(_const_form(case.model, {n: feeds[n] for n in params}), target / f"{CONST}.onnx")
        np.savez(target / "inputs.npz", **feeds)
        np.savez(target / "expected.npz", **expected)
        index[case.name] = {"op_type": graph.node[0].op_type, "rtol": case.rtol, "atol": case.atol,
                            "inputs": list(feeds), "params": params}
    (staging / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    try:
        staging.rename(folder)
    except OSError:  # another process finished first: its cache is the same
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")  # the cast generators warn about overflow on purpose
    target = Path(sys.argv[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    _generate(target)
