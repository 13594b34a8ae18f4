"""`edgec tune`: an Optuna study over the build flags that change speed, size and accuracy.

Every knob is an `edgec build` flag (precision, --calibration-method, --calibration-samples, and
the target backend's declared options that have choices), so the best trial is written as a build
command and as a config file that `edgec build --config` takes. Latency and size are objectives
(multi-objective when both are asked); the accuracy drop is a constraint (Optuna's
`constraints_func`). The study lives in Optuna's RDB storage: SQLite in the output folder by
default, so an interrupted study resumes; `--storage postgresql://...` lets several workers on
several machines add trials to one study.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from edgec import config
from edgec.choice.compare import Candidate, Choice, Comparison, attach_details, build_candidate, mark_pareto
from edgec.choice.measure import Evaluation, Figures, measure
from edgec.errors import InputError, require

logger = logging.getLogger(__name__)

OBJECTIVES = {"latency": "p50_ms", "size": "size_bytes"}
CALIBRATION_SAMPLES = (16, 32, 64, 128)  # the knob's values; more than the data holds means all of it
TUNED_OPTIONS = ("calibration_method", "quantizer")  # declared options whose choices change the numbers
BEST_CONFIG = "best.toml"
RESULTS = "results.json"
REPORT = "report.html"


@dataclass
class Tuning:
    """What a run of `edgec tune` left: the study, the best configuration and where it was written."""

    study: str
    storage: str
    trials: int  # trials in the study, from every worker
    added: int  # trials this run added
    best: Optional[Candidate]
    command: Optional[str]
    config_file: Optional[str]
    results_file: str
    report_file: str


def space(trial, target, calibration: str | None) -> tuple[str, dict]:
    """Sample one configuration: (precision, build options by name)."""
    from edgec.options import declared

    precisions = [p for p in target.precisions if p != "int8" or calibration]
    precision = trial.suggest_categorical("precision", precisions)
    options = {}
    for option in declared(target):
        int8_only = option.name == "calibration_method"
        if option.name in TUNED_OPTIONS and option.choices and (precision == "int8" or not int8_only):
            # "auto" measures inside the build what the study measures itself
            options[option.name] = trial.suggest_categorical(option.name, [c for c in option.choices if c != "auto"])
    if precision == "int8":
        options["calibration_samples"] = trial.suggest_categorical("calibration_samples", list(CALIBRATION_SAMPLES))
    return precision, options


def open_study(storage: str, name: str, objectives: list[str], attempts: int = 5):
    """Create or resume the study; a storage that cannot be reached is one line (exit 2).

    Workers that start together race to create Optuna's tables, enum types and study row in a new
    database. The loser sees a duplicate (a unique violation, or PostgreSQL's "already exists"), which
    means the winner made them, so it opens the storage again.
    """
    optuna = require("optuna", "tune")
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            rdb = optuna.storages.RDBStorage(storage, engine_kwargs=_engine_options(storage))
            sampler = optuna.samplers.TPESampler(constraints_func=_constraints, n_startup_trials=4)
            return optuna.create_study(storage=rdb, study_name=name, directions=["minimize"] * len(objectives),
                                       sampler=sampler, load_if_exists=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            if _lost_creation_race(exc):
                if attempt == attempts - 1:
                    raise
                time.sleep(1.0 + attempt)
                continue
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot open the study storage {_redacted(storage)}: {why}") from None


# SQLSTATEs of a create that another worker did first: unique_violation, duplicate_object, duplicate_table
_DUPLICATE_STATES = {"23505", "42710", "42P07"}


def _lost_creation_race(exc: Exception) -> bool:
    from sqlalchemy.exc import IntegrityError

    driver_error = getattr(exc, "orig", None)
    state = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    return isinstance(exc, IntegrityError) or state in _DUPLICATE_STATES


def _engine_options(storage: str) -> dict:
    return {"connect_args": {"connect_timeout": 10}} if storage.startswith("postgresql") else {}


def _redacted(storage: str) -> str:
    """The storage URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as the user gave it
        return storage


def _constraints(trial) -> list[float]:
    """Feasible when <= 0: the accuracy drop minus the budget (a failed trial carries none)."""
    return [trial.user_attrs.get("excess_drop", 0.0)]


class Tuner:
    """One worker of a study: opened (every input checked, the storage reached) before any trial runs."""

    def __init__(self, source: str, target: str, output: str | Path, *, evaluation_data: str, trials: int,
                 objectives: tuple[str, ...] = ("latency",), max_accuracy_drop: float = 1.0,
                 device: str | None = None, calibration: str | None = None, storage: str | None = None,
                 study_name: str | None = None, input_shapes: tuple[str, ...] = (), weights: str | None = None,
                 iters: int = 50, trust_code: bool = False):
        from edgec.frontends import require_trust
        from edgec.targets import load_target

        require_trust(source, trust_code)
        if trials < 1:
            raise InputError(f"--trials must be at least 1, got {trials}")
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown or not objectives:
            raise InputError(f"unknown objective '{unknown[0] if unknown else ''}': choose latency, size or "
                             "latency,size")
        self.source, self.target, self.spec = source, target, load_target(target)
        self.trials, self.budget, self.device, self.calibration = trials, max_accuracy_drop, device, calibration
        self.input_shapes, self.weights, self.iters, self.trust_code = input_shapes, weights, iters, trust_code
        self.fields = [OBJECTIVES[o] for o in objectives]
        self.output = Path(output)
        if storage is None:  # the default study lives in the output folder
            self.output.mkdir(parents=True, exist_ok=True)
        self.storage = storage or f"sqlite:///{(self.output / 'study.db').resolve()}"
        self.name = study_name or f"{Path(source).stem}-{self.spec.name}"
        self.study = open_study(self.storage, self.name, list(objectives))
        self.output.mkdir(parents=True, exist_ok=True)
        self.evaluation = Evaluation.load(evaluation_data, source, input_shapes, weights, trust_code)

    def objective(self, trial, on_trial: Callable[[int, Candidate], None] | None = None):
        """Build and measure one sampled configuration; a refused one is pruned with its reason."""
        from edgec.package.harness.manifest import to_json

        precision, options = space(trial, self.spec, self.calibration)
        candidate = Candidate(self.spec.name, precision, options)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        folder = self.output / "trials" / f"{trial.number:04d}"
        artifact = build_candidate(self.source, candidate, folder, self.calibration, input_shapes=self.input_shapes,
                                   weights=self.weights, trust_code=self.trust_code)
        if artifact is not None:
            candidate.figures = measure([artifact], self.device, self.evaluation, self.iters, rounds=1)[0]
            trial.set_user_attr("excess_drop",
                                self.evaluation.baseline - (candidate.figures.accuracy or 0.0) - self.budget)
        trial.set_user_attr("candidate", to_json(candidate))
        if on_trial:
            on_trial(trial.number, candidate)
        if artifact is None:
            raise require("optuna", "tune").TrialPruned(candidate.reason)
        return [getattr(candidate.figures, f) for f in self.fields]

    def run(self, on_trial: Callable[[int, Candidate], None] | None = None) -> Tuning:
        """Add the trials, then write the best configuration, the results and the report."""
        from edgec.package.harness.manifest import to_json
        from edgec.report import html

        before = len(self.study.trials)
        self.study.optimize(lambda trial: self.objective(trial, on_trial), n_trials=self.trials, catch=())
        comparison = _comparison(self.study, self.source, self.device, self.evaluation, self.budget, self.fields)
        best = comparison.candidates[comparison.choice.index] if comparison.choice.index is not None else None
        command = config_file = None
        if best is not None:
            attach_details(comparison, best, self.device)
            values = dict(source=self.source, target=self.target, precision=best.precision,
                          input_shapes=list(self.input_shapes), weights=self.weights,
                          calibration=self.calibration if best.precision == "int8" else None, **best.flags)
            command = config.command(values)
            config_file = str(config.write(self.output / BEST_CONFIG, values,
                                           f"edgec tune, study {self.name}: {comparison.choice.why}\n{command}"))
        results = self.output / RESULTS
        results.write_text(json.dumps(to_json(comparison), indent=2, sort_keys=True))
        html.write(comparison, self.output / REPORT)
        return Tuning(self.name, _redacted(self.storage), len(self.study.trials), len(self.study.trials) - before,
                      best, command, config_file, str(results), str(self.output / REPORT))


def _comparison(study, source, device, evaluation, budget, fields) -> Comparison:
    """Every finished trial of the study (from every worker) as compare's table, and the best feasible one."""
    from edgec.package.harness.manifest import from_json

    candidates = [from_json(Candidate, t.user_attrs["candidate"], f"trial {t.number}")
                  for t in study.trials if "candidate" in t.user_attrs]
    mark_pareto(candidates)
    feasible = [(i, c) for i, c in enumerate(candidates) if c.figures is not None
                and evaluation.baseline - (c.figures.accuracy or 0.0) <= budget]
    if feasible:
        index, best = min(feasible, key=lambda ic: tuple(getattr(ic[1].figures, f) for f in fields))
        choice = Choice(index, f"the best of {len(candidates)} trials on {', '.join(fields)} within {budget} "
                        f"points of the source model: {best.label} ({_figures(best.figures)})")
    else:
        choice = Choice(None, f"no trial held the accuracy budget of {budget} points")
    emulated = any(c.figures and c.figures.emulated for c in candidates)
    return Comparison(source, device or "the target's device", emulated, evaluation.source, evaluation.measure,
                      evaluation.baseline, budget, candidates, choice)


def _figures(f: Figures) -> str:
    return f"p50 {f.p50_ms:.3f} ms, {f.size_bytes} bytes, {f.accuracy:.2f} %"
