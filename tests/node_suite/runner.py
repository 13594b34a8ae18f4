"""Build every node test for a target with edgec's Python API, run the artifact, judge the result.

Each (test, form) is built and run in a forked child process, so a segfault in a runtime or a
converter costs one result, not the suite. The parent imports numpy, onnx, onnxruntime, edgec
and the target's runtime once before forking, so a child starts in milliseconds. `run_isolated`
makes that parent a fresh spawned process: a fork copies its parent's whole address space, and a
test worker that imported torch, TensorFlow or TVM for earlier tests made each fork 80 ms dearer
(198 against 120 CPU-ms a form on onnxruntime). The child
builds in fp32 with the test's own inputs as the artifact's samples, without the build's
host-verification subprocess, then runs the artifact's own harness (`run.py infer`) in that same
child and compares with the test's expected outputs at the test's tolerance.

Outcomes, worst first:
- wrong: built, but the outputs differ from the expected ones;
- crash: anything but a clean refusal: an exception that is not an EdgecError, a refusal that
  spans several lines, a signal, a timeout, or a harness that cannot run an artifact it was given;
- refused: a one-line EdgecError (exit code 2);
- passed.
"""
from __future__ import annotations

import collections
import contextlib
import io
import multiprocessing
import os
import re
import runpy
import signal
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from .cases import NodeCase

PASSED, WRONG, CRASH, REFUSED = "passed", "wrong", "crash", "refused"
SEVERITY = (WRONG, CRASH, PASSED, REFUSED)  # a test's status is the first one any of its forms has
JOB_TIMEOUT_S = 300
WARM_UP_CASE = "test_relu"
HARNESS_FILES = ("run.py", "edgec_runtime.py")
# A line of a dead child's output that says what went wrong (not the INFO line a runtime printed last).
ERROR_WORDS = re.compile(r"error|fail|abort|assert|exception|terminate|fatal", re.IGNORECASE)
# What each target's runtime needs imported in the parent, so forked children start warm.
RUNTIME_MODULES = {
    "onnxruntime": [],
    "openvino": ["openvino", "openvino.frontend"],
    "tflite": ["ai_edge_litert.interpreter", "edgec.backends.tflite.lowering"],
    "tvm": ["tvm", "tvm.relax", "tvm.relax.frontend.onnx", "edgec.backends.tvm.tuning"],
}


@dataclass(frozen=True)
class Outcome:
    """What one form of one test did on one target."""

    test: str
    op_type: str
    form: str
    status: str
    reason: str = ""
    seconds: float = 0.0


def preload(target) -> None:
    """Import everything a build and a harness run need, once, in the parent, and look up the runtime's
    release there (edgec caches it per process)."""
    import importlib

    from edgec.backends import get_backend

    for module in ["onnx", "onnxruntime", "onnx_ir", "onnxscript", "edgec.api", "edgec.passes",
                   "edgec.package.samples", "edgec.quantize", f"edgec.backends.{target.backend}",
                   *RUNTIME_MODULES.get(target.backend, [])]:
        importlib.import_module(module)
    get_backend(target.backend, target).requirements(target)
    _warm_up(target)


def _warm_up(target) -> None:
    """One build and harness run of a plain case here, before any fork: the modules a build imports lazily
    are then imported once, not again in every child (100 CPU-ms a form on onnxruntime without it)."""
    from edgec import api
    from edgec.package.harness import interface

    from .cases import SHIPPED, load_cases

    case = load_cases([WARM_UP_CASE])[0]
    with tempfile.TemporaryDirectory(prefix="edgec-nodesuite-warm-up-") as tmp, \
            contextlib.suppress(Exception):  # a failure shows again, judged, in the case's own forked job
        feeds = case.feeds(SHIPPED)
        interface.save(Path(tmp) / "samples.npz", feeds)
        api.build(str(case.model(SHIPPED)), target, Path(tmp) / "artifact", precision="fp32",
                  samples=Path(tmp) / "samples.npz", host_verify=False)
        run_harness_infer(Path(tmp) / "artifact", feeds, Path(tmp))


def first_line(text: str) -> str:
    """The first line of a message that says something: OpenVINO's start with lines that only locate."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return next((line for line in lines if not line.endswith(":")), lines[0] if lines else "")


def compare(got: dict, expected: dict, rtol: float, atol: float) -> str:
    """'' when every expected output matches (shape, kind of dtype, values at rtol/atol), else why not.

    The values are judged as onnx's backend test runner judges them (numpy's assert_allclose, NaN
    equal to NaN). Integer width may differ (int32 for int64); float for int or bool may not.
    """
    for name, ref in expected.items():
        if name not in got:
            return f"output '{name}' missing (the artifact gave {sorted(got)})"
        out = np.asarray(got[name])
        if out.shape != ref.shape:
            return f"output '{name}' has shape {list(out.shape)}, expected {list(ref.shape)}"
        if _kind(out.dtype) != _kind(ref.dtype):
            return f"output '{name}' is {out.dtype}, expected {ref.dtype}"
        a, b = out.astype(np.float64), ref.astype(np.float64)
        close = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
        if not close.all():
            bad = ~close
            with np.errstate(invalid="ignore"):
                err = float(np.max(np.abs(a[bad] - b[bad])))
            return (f"output '{name}': {int(bad.sum())} of {bad.size} values differ, max abs err {err:.3g} "
                    f"(rtol {rtol:g}, atol {atol:g})")
    return ""


def _kind(dtype) -> str:
    kind = np.dtype(dtype).kind
    return "int" if kind in "iu" else kind


def run_harness_infer(artifact: Path, feeds: dict, tmp: Path) -> tuple[int, str, dict]:
    """`python run.py infer` of the artifact, run in this process: (exit code, error line, outputs)."""
    source, dest = tmp / "feeds.npz", tmp / "outputs.npz"
    np.savez(source, **feeds)
    script = str(artifact / "run.py")
    argv, sys.argv = sys.argv, [script, "infer", "--inputs", str(source), "--outputs", str(dest)]
    stderr = io.StringIO()
    try:
        with redirect_stderr(stderr), redirect_stdout(io.StringIO()):
            runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Exception as exc:  # noqa: BLE001 - python run.py would print a traceback and exit 1
        return 1, f"{type(exc).__name__}: {first_line(exc)} [{_where(exc)}]", {}
    finally:
        sys.argv = argv
    if code != 0:
        return code, first_line(stderr.getvalue()) or f"exit {code}", {}
    with np.load(dest, allow_pickle=False) as data:
        return 0, "", {k: data[k] for k in data.files}


def run_one(case: NodeCase, form: str, target, tmp: Path) -> tuple[str, str]:
    """Build and run one form of one case: (status, reason)."""
    from edgec import api
    from edgec.errors import EdgecError
    from edgec.package.harness import interface

    feeds = case.feeds(form)
    interface.save(tmp / "samples.npz", feeds)
    artifact = tmp / "artifact"
    try:
        api.build(str(case.model(form)), target, artifact, precision="fp32", samples=tmp / "samples.npz",
                  host_verify=False)
    except EdgecError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        if exc.exit_code != 2:
            return CRASH, f"{type(exc).__name__} (exit {exc.exit_code}): {first_line(exc)}"
        if len(lines) > 1:
            return CRASH, f"refusal spans {len(lines)} lines: {first_line(exc)}"
        return REFUSED, first_line(exc)
    except Exception as exc:  # noqa: BLE001 - every other exception is the bug this suite looks for
        return CRASH, f"{type(exc).__name__}: {first_line(exc)} [{_where(exc)}]"
    code, line, outputs = run_harness_infer(artifact, feeds, tmp)
    if code != 0:
        return CRASH, f"harness infer exit {code}: {line}"
    why = compare(outputs, case.expected(), case.rtol, case.atol)
    return (WRONG, why) if why else (PASSED, "")


def _where(exc: BaseException) -> str:
    """The innermost frame of edgec or of the artifact's harness (file:line), else the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/edgec/" in f.filename or Path(f.filename).name in HARNESS_FILES]
    frame = (ours or frames)[-1] if frames else None
    return f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"


def _child(case: NodeCase, form: str, target, conn, log: str) -> None:
    """The forked child: quiet file descriptors, one job, the result through the pipe, then exit."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = os.fdopen(fd, "w", buffering=1)  # a test runner may have replaced them
    sys.dont_write_bytecode = True  # the artifact's harness runs once: no __pycache__ to write and delete
    try:
        # beside the log, inside the parent's folder: what a killed child leaves is removed with it
        with tempfile.TemporaryDirectory(prefix="job-", dir=os.path.dirname(log)) as tmp:
            status, reason = run_one(case, form, target, Path(tmp))
    except BaseException as exc:  # noqa: BLE001
        status, reason = CRASH, f"{type(exc).__name__}: {first_line(exc)} [{_where(exc)}]"
    conn.send((status, reason))
    conn.close()
    os._exit(0)  # no atexit handlers or runtime teardown: the parent owns those


def run_isolated(target: str, cases: list[NodeCase], workers: int = 2) -> list[Outcome]:
    """`run` in a fresh spawned process, whose forks copy only what a build imports."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_run_and_send, args=(target, cases, workers, send))  # not daemonic: it forks
    process.start()
    send.close()
    outcomes = _receive(receive, wait_for_it=True)
    process.join()
    if outcomes is None:
        raise RuntimeError(f"the node suite's process for {target} exited {process.exitcode} without its outcomes")
    return outcomes


def _run_and_send(target: str, cases: list[NodeCase], workers: int, conn) -> None:
    conn.send(run(target, cases, workers))
    conn.close()


def run(target: str, cases: list[NodeCase], workers: int = 2, timeout: float = JOB_TIMEOUT_S) -> list[Outcome]:
    """Every form of every case on `target`, `workers` forked children at a time."""
    from edgec.targets import load_target

    spec = load_target(target)  # read once here, not in every child (a TOML parse and its checks)
    preload(spec)
    context = multiprocessing.get_context("fork")
    jobs = [(case, form) for case in cases for form in case.forms]
    order = {(case.name, form): index for index, (case, form) in enumerate(jobs)}
    pending = collections.deque(jobs)
    outcomes: list[Outcome] = []
    running = {}
    with tempfile.TemporaryDirectory(prefix="edgec-nodesuite-") as logs:
        while pending or running:
            while pending and len(running) < workers:
                case, form = pending.popleft()
                receive, send = context.Pipe(duplex=False)
                log = os.path.join(logs, f"{case.name}.{form}.log")
                process = context.Process(target=_child, args=(case, form, spec, send, log), daemon=True)
                process.start()
                send.close()
                running[process.sentinel] = (process, receive, case, form, log, time.perf_counter())
            ready = wait(list(running), timeout=1.0)
            now = time.perf_counter()
            for sentinel in list(running):
                process, receive, case, form, log, started = running[sentinel]
                if sentinel not in ready and now - started < timeout:
                    continue
                if sentinel not in ready:
                    process.kill()
                process.join()
                del running[sentinel]
                result = _receive(receive)
                status, reason = result or (CRASH, _death(process.exitcode, now - started, timeout, log))
                outcome = Outcome(case.name, case.op_type, form, status, reason, round(now - started, 3))
                outcomes.append(outcome)
    return sorted(outcomes, key=lambda o: order[(o.test, o.form)])


def _receive(connection, wait_for_it: bool = False):
    """What a child sent, or None when it died before sending it (`wait_for_it`: the child is still running)."""
    try:
        return connection.recv() if wait_for_it or connection.poll() else None
    except EOFError:
        return None
    finally:
        connection.close()


def _death(exitcode: int | None, seconds: float, timeout: float, log: str) -> str:
    """Why a child gave no result: a signal, a timeout or an exit, with the last error line it printed."""
    if seconds >= timeout:
        why = f"timed out after {timeout:.0f} s"
    elif exitcode is not None and exitcode < 0:
        why = f"killed by {signal.Signals(-exitcode).name}"
    else:
        why = f"exited {exitcode} without a result"
    text = Path(log).read_text(errors="replace") if Path(log).exists() else ""
    errors = [line.strip() for line in text.splitlines() if ERROR_WORDS.search(line)]
    return why + (f": {errors[-1][:200]}" if errors else "")


def status_of(forms: list[Outcome]) -> str:
    """One test's status from its forms: wrong or crash if any form is; passed if any form passed."""
    statuses = {o.status for o in forms}
    return next(s for s in SEVERITY if s in statuses)
