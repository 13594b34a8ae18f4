"""MetaSchedule tuning against a reusable JSON database, and compiling with its records.

Tuning is paid once: a task (one fused kernel) whose workload is already in the database is
not tuned again, so rebuilding a model for the same target spends no tuning time. Records
are keyed by the TVM target, so the default database folder is one per target.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgec import system

logger = logging.getLogger(__name__)

# A task is worth tuning when it does at least this share of the model's arithmetic:
# elementwise kernels gain nothing from tuning and would take trials from the convolutions.
MIN_FLOP_SHARE = 0.005
# The heaviest kernels get at least this many trials each; the budget may run out before the
# lightest ones get any (they keep TVM's default schedule).
MIN_TRIALS_PER_ROUND = 4
# Importing TVM's tensor intrinsics takes 30 to 60 s here, in every builder process, and
# fp32/fp16 CPU schedules never use them; the builder below skips that import.
BUILDER_TIMEOUT_S = 120


def default_db_dir(target_key: str) -> Path:
    return system.cache_root() / "tvm-tuning" / target_key


@dataclass
class TuningReport:
    """What tuning did for one build; goes into the manifest."""

    db: str
    trials_requested: int
    trials_run: int = 0
    seconds: float = 0.0
    tasks: list[str] = field(default_factory=list)  # tunable tasks of this model
    tuned_now: list[str] = field(default_factory=list)
    from_db: list[str] = field(default_factory=list)
    records: int = 0  # best records applied to this model

    @property
    def tuned(self) -> bool:
        return self.records > 0

    def as_dict(self) -> dict:
        return {"tuned": self.tuned, "db": self.db, "trials_requested": self.trials_requested,
                "trials_run": self.trials_run, "seconds": round(self.seconds, 3), "tasks": len(self.tasks),
                "tasks_tuned_now": len(self.tuned_now), "tasks_from_db": len(self.from_db),
                "records": self.records}


def fuse(mod, tvm_target):
    """The fusion compile_relax applies before it looks up the database, so task keys match."""
    import tvm
    from tvm import relax

    with tvm_target:
        return tvm.transform.Sequential([
            relax.backend.DispatchSampling(),
            relax.backend.DispatchSortScan(),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ])(mod)


def tunable_tasks(mod, tvm_target) -> list:
    """The model's kernels that do a real share of its arithmetic, heaviest first."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    tasks = ms.relax_integration.extract_tasks(fuse(mod, tvm_target), tvm_target)
    flops = {t.task_name: estimate_tir_flops(t.dispatched[0]) * t.weight for t in tasks}
    total = sum(flops.values()) or 1.0
    chosen = [t for t in tasks if flops[t.task_name] >= MIN_FLOP_SHARE * total]
    return sorted(chosen, key=lambda t: -flops[t.task_name])


def open_db(db_dir: Path):
    from tvm.s_tir import meta_schedule as ms

    db_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(db_dir))


def tune(mod, tvm_target, db_dir: Path, trials: int, *, retune: bool = False) -> TuningReport:
    """Spend up to `trials` measurements on the model's tasks missing from the database.

    A database tunes each kernel once: a kernel it has seen is reused as it is, even one the
    budget ran out before (that one keeps TVM's default schedule).

    With `retune`, tasks already in the database are tuned further, starting from their
    records (the benchmark's 64 -> 256 -> 1024 ladder).
    """
    from tvm.s_tir import meta_schedule as ms

    db = open_db(db_dir)
    tasks = tunable_tasks(mod, tvm_target)
    report = TuningReport(db=str(db_dir), trials_requested=trials, tasks=[t.task_name for t in tasks])
    todo = [t for t in tasks if retune or not db.has_workload(t.dispatched[0])]
    report.from_db = [t.task_name for t in tasks if t not in todo]
    if trials > 0 and todo:
        logger.info(f"tuning {len(todo)} of {len(tasks)} kernels with {trials} trials "
                    + (f"more, starting from the records in {db_dir}" if retune
                       else f"({len(report.from_db)} already in {db_dir})"))
        started = time.perf_counter()
        progress = _progress(trials)
        with system.scratch("tvm-tune") as work:
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                todo, work_dir=work, num_threads="physical", seed=0)
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=work, max_trials_global=trials,
                num_trials_per_iter=min(64, max(MIN_TRIALS_PER_ROUND, trials // len(todo))),
                builder=ms.builder.LocalBuilder(timeout_sec=BUILDER_TIMEOUT_S, f_build=build_without_intrinsics),
                runner=ms.runner.LocalRunner(), database=db, cost_model="xgb",
                measure_callbacks=ms.measure_callback.MeasureCallback.create("default") + [progress],
            )
        for task in todo:  # mark every task as visited, even one the budget ran out before
            db.commit_workload(task.dispatched[0])
        report.seconds = time.perf_counter() - started
        report.trials_run = progress.done
        report.tuned_now = [t.task_name for t in todo]
    report.records = sum(1 for t in tasks if db.has_workload(t.dispatched[0])
                         and db.get_top_k(db.commit_workload(t.dispatched[0]), 1))
    return report


def _progress(total: int):
    """A measure callback that logs each batch of measured candidates."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        def __init__(self):
            self.done = 0
            self.started = time.perf_counter()

        def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results):
            self.done += len(candidates)
            ok = [r.run_secs for r in runner_results if r.error_msg is None and r.run_secs]
            best = min((sum(float(s) for s in secs) / len(secs) for secs in ok), default=None)
            best_text = f", best of batch {best * 1e3:.3f} ms" if best is not None else ", no candidate ran"
            logger.info(f"tuning: {self.done}/{total} trials in {time.perf_counter() - self.started:.0f} s "
                f"(kernel {task_id}{best_text})")

    return Progress()


def build_without_intrinsics(mod, target, _params):
    """MetaSchedule's default_build minus the tensor-intrinsic import (see BUILDER_TIMEOUT_S)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def compile_with_db(mod, tvm_target, db_dir: Path | None):
    """Compile the Relax module, using the database's best schedule for every kernel it holds."""
    from tvm.s_tir import meta_schedule as ms

    db = open_db(db_dir) if db_dir is not None else ms.database.MemoryDatabase()
    return ms.relax_integration.compile_relax(db, mod, tvm_target, None)


def export_records(mod, tvm_target, db_dir: Path, dest: Path) -> int:
    """Copy the best record of each of this model's kernels into `dest` (a JSON database)."""
    from tvm.s_tir import meta_schedule as ms

    db = open_db(db_dir)
    dest.mkdir(parents=True, exist_ok=True)
    out = ms.database.JSONDatabase(work_dir=str(dest))
    count = 0
    for task in tunable_tasks(mod, tvm_target):
        if not db.has_workload(task.dispatched[0]):
            continue
        for record in db.get_top_k(db.commit_workload(task.dispatched[0]), 1):
            workload = out.commit_workload(task.dispatched[0])
            out.commit_tuning_record(ms.database.TuningRecord(
                record.trace, workload, record.run_secs, record.target, record.args_info))
            count += 1
    return count
