"""Run IR models in onnxruntime: the reference that samples, the error report and the fallback use."""
from __future__ import annotations

import concurrent.futures
import functools
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnx_ir as ir

from edgec import ir as eir
from edgec import system


def session(model: ir.Model | eir.Snapshot, optimize: bool = False, threads: int = 0, batches: bool = False):
    """An onnxruntime CPU session for `model`; unoptimized unless asked (integer kernels need it);
    `threads` 0 lets onnxruntime choose, 1 times steadily on a shared machine. A snapshot's proto is
    read from memory where its weights are all in it (a model serializes once for the reference
    run and the pass pipeline's snapshot). `batches`: the model's one-sample axis freed where it can
    be (`free_batch`), for `run_each`."""
    import onnxruntime as ort

    options = session_options(optimize, threads)
    freed = free_batch(model) if batches and isinstance(model, ir.Model) else None
    if freed is not None:
        try:
            return ort.InferenceSession(freed.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime's shape inference refuses the freed batch: the model as built
            pass
    if isinstance(model, eir.Snapshot):
        if model.folder is None:
            return ort.InferenceSession(model.proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        model = model.restore()
    with system.scratch("ort") as tmp:  # the session reads it all at creation
        path = eir.save(model, Path(tmp) / "model.onnx")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_options(optimize: bool = False, threads: int = 0):
    """`session`'s onnxruntime options, for a session made from a file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    # threads wait without spinning: on a shared 2-core host spinning cost a calibration pass 40 % more CPU
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # memory from one arena the process keeps (`_shared_arena`): a session's own arena went with it, and the next
    # session's kernels faulted the same amount in afresh (MobileNetV2's int8 tflite build: 660k page faults and
    # 2.9 s of system time, 390k and 1.6 s with one arena)
    _shared_arena()
    options.add_session_config_entry("session.use_env_allocators", "1")
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


_ARENA_LOCK = threading.Lock()
_ARENA_REGISTERED = False


def _shared_arena() -> None:
    """Register one CPU arena with onnxruntime's environment, once per process: the sessions that opt in
    (`session.use_env_allocators`) share it."""
    global _ARENA_REGISTERED
    with _ARENA_LOCK:
        if _ARENA_REGISTERED:
            return
        import onnxruntime as ort

        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults
        _ARENA_REGISTERED = True


def run_all(sess, runs, outputs: list) -> dict[str, np.ndarray]:
    """The outputs of every run (package.harness.interface.Runs), put together as the runs were split."""
    names = [spec.name for spec in outputs]
    return runs.merge([dict(zip(names, sess.run(names, feed))) for feed in runs], outputs)


BATCH_BYTES = 1 << 26  # outputs of one batched run at most (every calibrated tensor of MobileNetV2: ~25 MB a sample)


def run_each(sess, feeds: list[dict], constant: frozenset[str] = frozenset(), digest: Callable | None = None
             ) -> Iterator:
    """Every feed's outputs, in order, as a run of that feed alone gives them, from fewer runs: one-sample
    feeds of the same shapes run together where each output not in `constant` (see `input_free`) comes
    back with one row per sample. onnxruntime's CPU kernels compute a sample of a batch as they compute it
    alone (MobileNetV2's 223 calibrated tensors are bit-identical in runs of 8), and a run of 8 costs a
    third of 8 lone ones. The first batch proves it for the model at hand: it repeats the first feed, and
    its first and last rows must equal their lone runs (a sample mixed with those before it along axis 0,
    a sequence or a cumulative sum, shows in the last); else every feed runs alone. After the proof, the
    next batch runs while the caller uses the one before (onnxruntime releases the GIL). `digest`: what is
    yielded for each feed's outputs instead of them, computed in the thread that ran the batch (a summary
    of large outputs, numpy's reductions releasing the GIL too)."""
    if not feeds:
        return
    digest = digest or _as_they_are
    first = sess.run(None, feeds[0])
    yield digest(first)
    names = [o.name for o in sess.get_outputs()]
    varying = [i for i, name in enumerate(names) if name not in constant]
    batchable = all(_rows(first[i]) == 1 for i in varying) and _one_sample_shapes(feeds[0]) is not None
    size = max(1, BATCH_BYTES // max(1, sum(first[i].nbytes for i in varying))) if batchable else 1
    start, trusted = 1, False
    while start < len(feeds) and size > 1 and not trusted:
        end = _batch_end(feeds, start, size)
        if end - start < 2:
            yield from (digest(sess.run(None, feed)) for feed in feeds[start:end])
        else:
            same = _one_sample_shapes(feeds[0]) == _one_sample_shapes(feeds[start])
            rows = _batched(sess, feeds[:1] + feeds[start:end], varying) if same else None
            last = sess.run(None, feeds[end - 1])
            trusted = rows is not None and _equal(rows[0], first) and _equal(rows[-1], last)
            size = size if trusted else 1
            yield from map(digest, rows[1:] if trusted else [*(sess.run(None, feed) for feed in feeds[start:end - 1]),
                                                             last])
        start = end
    batches = []
    while start < len(feeds):
        end = _batch_end(feeds, start, size)
        batches.append(feeds[start:end])
        start = end
    for digests in _ahead(functools.partial(_run_batch, sess, batch, varying, digest) for batch in batches):
        yield from digests


def _as_they_are(outputs: list[np.ndarray]) -> list[np.ndarray]:
    return outputs


def _run_batch(sess, batch: list[dict], varying: list[int], digest: Callable) -> list:
    """Each feed's outputs, digested: from one run of the batch where onnxruntime takes it, else from lone runs."""
    rows = _batched(sess, batch, varying) if len(batch) > 1 else None
    return [digest(outputs) for outputs in (rows if rows is not None else [sess.run(None, feed) for feed in batch])]


def _ahead(calls: Iterator[Callable]) -> Iterator:
    """Each call's result in order, the next call running in a thread while the caller uses the one before."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = None
        for call in calls:
            running = pool.submit(call)
            if pending is not None:
                yield pending.result()
            pending = running
        if pending is not None:
            yield pending.result()


def _batch_end(feeds: list[dict], start: int, size: int) -> int:
    """Where the batch from `start` ends: at most `size` one-sample feeds of the same shapes."""
    shapes = _one_sample_shapes(feeds[start])
    end = start + 1
    while shapes is not None and end < len(feeds) and end - start < size \
            and _one_sample_shapes(feeds[end]) == shapes:
        end += 1
    return end


def _equal(outputs: list, others: list) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(outputs, others))


def _one_sample_shapes(feed: dict) -> tuple | None:
    """The feed's shapes and types where every input holds one sample (axis 0 of size 1), else None."""
    if not all(np.ndim(v) and np.shape(v)[0] == 1 for v in feed.values()):
        return None
    return tuple((name, np.shape(v), np.asarray(v).dtype.str) for name, v in sorted(feed.items()))


def _batched(sess, batch: list[dict], varying: list[int]) -> list[list[np.ndarray]] | None:
    """The batch's feeds run as one, split into one list of outputs per feed; None where an output does
    not come back with a row per feed (a batch axis the model fixes) or the run fails."""
    import onnxruntime as ort

    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a refused batch is expected: not an error to print
    try:
        outputs = sess.run(None, {name: np.concatenate([feed[name] for feed in batch]) for name in batch[0]}, quiet)
    except Exception:  # onnxruntime refuses a batch the model fixes
        return None
    if not all(_rows(outputs[i]) == len(batch) for i in varying):
        return None
    keep = set(varying)
    return [[out[row:row + 1] if i in keep else out for i, out in enumerate(outputs)] for row in range(len(batch))]


def _rows(output) -> int | None:
    """An output's size along axis 0; None for a scalar or a sequence."""
    return output.shape[0] if isinstance(output, np.ndarray) and output.ndim else None


def free_batch(model: ir.Model):
    """None for a model whose weights a proto in memory should not copy (batches would not pay there);
    else the model as an ONNX proto whose axis 0, where it holds one sample (a build fixes a dynamic
    batch to 1), takes any size: the inputs' and outputs' first dimension named, the inner shapes left
    to onnxruntime, and a Reshape of a one-sample tensor computed from the inputs to a constant shape led
    by 1 given 0 there (the input's size). What this cannot free (a Reshape that folds the batch away, an
    Expand to a constant shape) gives outputs without a row per sample, a failed run or a model onnxruntime
    refuses, and the feeds run one at a time."""
    from onnx import numpy_helper

    if sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None) \
            > eir.SNAPSHOT_BYTES:
        return None
    proto = ir.serde.serialize_model(model)
    graph = proto.graph
    values = (*model.graph.inputs, *(out for node in model.graph for out in node.outputs))
    first_dims = {v.name: _first_dim(v) for v in values}
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = "batch"
    for value in graph.value_info:  # types kept, shapes left to onnxruntime
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")
    constants, fixed = {init.name: init for init in graph.initializer}, input_free(model)
    for index, node in enumerate(graph.node):
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        reshapes = node.op_type == "Reshape" and not allowzero and node.input[0] not in fixed \
            and node.input[0] not in constants
        shape = constants.get(node.input[1]) if reshapes and first_dims.get(node.input[0]) == 1 else None
        if shape is None or not shape.dims or numpy_helper.to_array(shape)[0] != 1:
            continue
        freed = numpy_helper.to_array(shape).copy()
        freed[0] = 0
        name = f"{shape.name}.free_batch.{index}"
        graph.initializer.append(numpy_helper.from_array(freed, name))
        node.input[1] = name
    return proto


def _first_dim(value: ir.Value):
    """The value's size along axis 0, seen through the Quantize/DequantizeLinear pairs of a QDQ graph, whose
    outputs have no shape inferred (a Reshape fed by a DequantizeLinear frees its batch as a float one)."""
    while value.shape is None and value.producer() is not None \
            and value.producer().op_type in ("QuantizeLinear", "DequantizeLinear"):
        value = value.producer().inputs[0]
    return value.shape[0] if value.shape is not None and value.shape.rank() else None


def input_free(model: ir.Model) -> frozenset[str]:
    """Names of the values the model computes from no input (a Clip's bound as a Constant node): the
    same in every run, whatever its batch. A node with subgraphs counts as reading the inputs."""
    reached = {v.name for v in model.graph.inputs}
    free = set()
    for node in model.graph:
        reads = any(v is not None and v.name in reached for v in node.inputs) or any(
            attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for attr in node.attributes.values())
        (reached if reads else free).update(v.name for v in node.outputs)
    return frozenset(free)
