"""LiteRT (TensorFlow Lite) adapter for the edgec harness (run.py), XNNPACK as the CPU delegate.

It uses ai-edge-litert, or tflite-runtime where that is what the device has. Per-operator
times: LiteRT's Python API exposes no profiler, so `profile` times each operator as its own
one-operator model (same delegate, same threads) cut from this model; the numbers add up to
about the whole model's latency, without the fusion across operators that XNNPACK may do.
"""
import os
import time

import numpy as np

try:
    from ai_edge_litert import interpreter as _litert
    RUNTIME = "ai-edge-litert"
except ImportError:  # a device with the older standalone runtime
    from tflite_runtime import interpreter as _litert
    RUNTIME = "tflite-runtime"


def runtime_version():
    from importlib.metadata import version

    return version(RUNTIME)


class Session:
    def __init__(self, folder, manifest, threads):
        self.path = os.path.join(folder, manifest["model"]["main"])
        self.threads = int(threads) if threads else None
        self.interpreter = self._open(self.path)
        self.inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        self.outputs = {d["name"]: d for d in self.interpreter.get_output_details()}

    def _open(self, path=None, content=None, **flags):
        interpreter = _litert.Interpreter(model_path=path, model_content=content, num_threads=self.threads, **flags)
        interpreter.allocate_tensors()
        return interpreter

    def run(self, feeds):
        it = self.interpreter
        batch = {name: value for name, value in feeds.items()}
        for name, detail in self.inputs.items():
            value = batch[name]
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
        it = self._open(self.path, experimental_disable_delegate_node_fusion=True)
        nodes = it._get_ops_details()
        delegated = [n for n in nodes if n["op_name"] == "DELEGATE"]
        original = [n for n in nodes if n["op_name"] != "DELEGATE"]
        covered = {tuple(int(t) for t in n["outputs"]) for n in delegated}
        missing = [n["op_name"] for n in original if tuple(int(t) for t in n["outputs"]) not in covered]
        return original, missing

    def verify_checks(self):
        """Which operators XNNPACK runs. Operators it leaves to LiteRT's reference kernels still compute the
        right numbers (the comparisons above judge those), so this reports rather than fails."""
        original, missing = self._delegation()
        counts = {}
        for name in missing:
            counts[name] = counts.get(name, 0) + 1
        if missing:
            detail = f"{len(missing)} of {len(original)} operators run outside XNNPACK: " + \
                ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
        else:
            detail = f"all {len(original)} operators delegated to XNNPACK"
        return {"xnnpack_delegation": {"passed": True, "all_delegated": not missing, "operators": len(original),
                                       "outside_xnnpack": counts, "detail": detail}}

    def profile(self, feed, warmup, iters):
        """Per-operator mean time (ms): each operator runs alone as a one-operator model."""
        try:
            from ai_edge_litert.tools import flatbuffer_utils
        except ImportError:
            raise SystemExit("error: per-operator profiling needs ai-edge-litert (tflite-runtime lacks the schema)")
        model = flatbuffer_utils.read_model(self.path)
        graph = model.subgraphs[0]
        names = {v: k for k, v in vars(flatbuffer_utils.BuiltinOperator).items() if not k.startswith("_")}
        unpackers = _unpackers(model)
        records = []
        for index, op in enumerate(graph.operators):
            if op in unpackers.values():
                continue  # constant unpacking (fp16 weights) happens once at load, not per inference
            content = _single_op_model(flatbuffer_utils, model, op, unpackers)
            it = self._open(content=content)
            for detail in it.get_input_details():
                it.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
            for _ in range(warmup):
                it.invoke()
            start = time.perf_counter()
            for _ in range(iters):
                it.invoke()
            ms = (time.perf_counter() - start) * 1000.0 / max(iters, 1)
            code = model.operatorCodes[op.opcodeIndex]
            out_name = graph.tensors[op.outputs[0]].name
            records.append({"name": f"{index}:{_text(out_name)}", "op": names.get(max(code.builtinCode,
                                                                                      code.deprecatedBuiltinCode), "?"),
                            "ms": ms})
        return records


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
