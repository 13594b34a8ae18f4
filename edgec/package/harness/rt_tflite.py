"""LiteRT (TensorFlow Lite) adapter for the edgec harness, XNNPACK as the CPU delegate.

It uses ai-edge-litert, or tflite-runtime where that is what the device has. Per-operator
times: LiteRT's Python API exposes no profiler, so `profile` times each operator as its own
one-operator model (same delegate, same threads) cut from this model; the numbers add up to
about the whole model's latency, without the fusion across operators that XNNPACK may do.
"""
import os
import time

import numpy as np

from .errors import HarnessError
from .manifest import RuntimeCheck
from .session import LayerTimer, Session

try:
    from ai_edge_litert import interpreter as _litert
    RUNTIME = "ai-edge-litert"
except ImportError:  # a device with the older standalone runtime
    from tflite_runtime import interpreter as _litert
    RUNTIME = "tflite-runtime"


class LiteRTSession(Session):
    runtime = RUNTIME
    runtime_errors = (RuntimeError,)  # what the interpreter raises when it cannot prepare or invoke

    def _open(self):
        self.path = os.path.join(self.folder, self.manifest.model.main)
        self.interpreter = self._interpreter(self.path)
        self.inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        self.outputs = {d["name"]: d for d in self.interpreter.get_output_details()}

    def _interpreter(self, path=None, content=None, **flags):
        threads = int(self.threads) if self.threads else None
        interpreter = _litert.Interpreter(model_path=path, model_content=content, num_threads=threads, **flags)
        interpreter.allocate_tensors()
        return interpreter

    def _run(self, feed):
        it = self.interpreter
        for name, detail in self.inputs.items():
            value = feed[name]
            if list(value.shape) != list(detail["shape"]):
                it.resize_tensor_input(detail["index"], list(value.shape), strict=True)
                it.allocate_tensors()
            it.set_tensor(detail["index"], value)
        it.reset_all_variables()  # recurrent state (an LSTM kernel's) starts from zero for every inference
        it.invoke()
        return {name: it.get_tensor(d["index"]) for name, d in self.outputs.items()}

    def _delegation(self):
        """(operators, operators the XNNPACK delegate took): with node fusion off every delegated
        operator becomes its own DELEGATE node with that operator's outputs."""
        it = self._interpreter(self.path, experimental_disable_delegate_node_fusion=True)
        nodes = it._get_ops_details()
        delegated = [n for n in nodes if n["op_name"] == "DELEGATE"]
        original = [n for n in nodes if n["op_name"] != "DELEGATE"]
        covered = {tuple(int(t) for t in n["outputs"]) for n in delegated}
        missing = [n["op_name"] for n in original if tuple(int(t) for t in n["outputs"]) not in covered]
        return original, missing

    def _checks(self):
        """Which operators XNNPACK runs. Operators it leaves to LiteRT's reference kernels still compute the
        right numbers (the comparisons judge those), so this reports rather than fails."""
        original, missing = self._delegation()
        counts = {}
        for name in missing:
            counts[name] = counts.get(name, 0) + 1
        if missing:
            detail = f"{len(missing)} of {len(original)} operators run outside XNNPACK: " + \
                ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
        else:
            detail = f"all {len(original)} operators delegated to XNNPACK"
        return {"xnnpack_delegation": RuntimeCheck(True, detail, {
            "all_delegated": not missing, "operators": len(original), "outside_xnnpack": counts})}

    def _layer_timer(self, feed):
        return OperatorTimer(self)


class OperatorTimer(LayerTimer):
    """Each operator runs alone, as a one-operator model cut from this one (same delegate, same threads)."""

    def __init__(self, session):
        try:
            from ai_edge_litert.tools import flatbuffer_utils
        except ImportError:
            raise HarnessError("per-operator profiling needs ai-edge-litert (tflite-runtime lacks the schema)") from None
        model = flatbuffer_utils.read_model(session.path)
        graph = model.subgraphs[0]
        names = {v: k for k, v in vars(flatbuffer_utils.BuiltinOperator).items() if not k.startswith("_")}
        unpackers = _unpackers(model)
        self.operators = []  # (layer key, interpreter)
        for index, op in enumerate(graph.operators):
            if op in unpackers.values():
                continue  # constant unpacking (fp16 weights) happens once at load, not per inference
            it = session._interpreter(content=_single_op_model(flatbuffer_utils, model, op, unpackers))
            for detail in it.get_input_details():
                it.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
            code = model.operatorCodes[op.opcodeIndex]
            kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
            self.operators.append(((f"{index}:{_text(graph.tensors[op.outputs[0]].name)}", kind, ""), it))
        self.sums = {}

    def run(self):
        for key, it in self.operators:
            start = time.perf_counter()
            it.invoke()
            self.sums[key] = self.sums.get(key, 0.0) + (time.perf_counter() - start) * 1000.0

    def reset(self):
        self.sums = {}

    def totals(self):
        return self.sums


def _text(name):
    return name.decode() if isinstance(name, bytes) else str(name)


def _constant(model, t):
    tensor = model.subgraphs[0].tensors[t]
    return bool(tensor.buffer) and model.buffers[tensor.buffer].data is not None


def _unpackers(model):
    """Operators whose inputs are all constants, by the tensor they produce."""
    return {o.outputs[0]: o for o in model.subgraphs[0].operators
            if len(o.outputs) == 1 and all(i < 0 or _constant(model, i) for i in o.inputs)}


def _single_op_model(utils, model, op, unpackers):
    """A copy of `model` whose graph is `op` alone, its non-constant inputs as graph inputs.

    Operators that only unpack constants for `op` (fp16 weights' DEQUANTIZE) come along, so
    the delegate still sees static weights.
    """
    import copy

    graph = model.subgraphs[0]
    ops = [unpackers[i] for i in op.inputs if i in unpackers] + [op]
    used = [i for o in ops for i in list(o.inputs) + list(o.outputs) if i >= 0]
    remap = {old: new for new, old in enumerate(dict.fromkeys(used))}
    buffers = [utils.BufferT()]
    tensors = []
    for old in remap:
        tensor = copy.copy(graph.tensors[old])
        if _constant(model, old):
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
        tensors.append(tensor)
    produced = {i for o in ops for i in o.outputs}
    sub = utils.SubGraphT()
    sub.tensors = tensors
    sub.operators = []
    for o in ops:
        new_op = copy.copy(o)
        new_op.inputs = [remap[i] if i >= 0 else -1 for i in o.inputs]
        new_op.outputs = [remap[i] for i in o.outputs]
        sub.operators.append(new_op)
    sub.inputs = [remap[i] for i in dict.fromkeys(op.inputs)
                  if i >= 0 and not _constant(model, i) and i not in produced]
    sub.outputs = [remap[i] for i in op.outputs]
    single = copy.copy(model)
    single.subgraphs = [sub]
    single.buffers = buffers
    single.signatureDefs = None
    return bytes(utils.convert_object_to_bytearray(single))
