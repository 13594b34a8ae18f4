"""`edgec build --precision auto`: build every precision the target takes, measure each on the device,
keep the fastest that holds the accuracy budget, and record why in the manifest.

int8 is not always faster: on a tiny CNN the per-call overhead dominates and onnxruntime's int8 runs
slower than fp32 here, so the choice is measured, never assumed. Under emulation timings mean
nothing: the documented rule (compare.EMULATED_RULE: the smallest that holds the budget) chooses.
The winner's configuration is written beside it as build.toml: `edgec build --config` replays it.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from edgec import config, system
from edgec.choice.compare import DEFAULT_ACCURACY_DROP, Candidate, build_candidate, choose, measure_candidates
from edgec.choice.measure import Evaluation
from edgec.errors import InputError
from edgec.package.harness.manifest import CandidateRecord, PrecisionChoice

logger = logging.getLogger(__name__)

REPLAY_FILE = "build.toml"
FALLBACK_OPTIONS = ("max_accuracy_drop", "eval_data")  # the int8 engine's layer fallback holds the same budget


def build(source: str, target: str, output: str | Path, *, device: str | None = None, calibration: str | None = None,
          options: dict | None = None, input_shapes: tuple[str, ...] = (), weights: str | None = None,
          const_inputs: tuple[str, ...] = (), samples: str | None = None, force: bool = False, iters: int = 100,
          trust_code: bool = False):
    """Build `source` for `target` at the precision measured best on `device`; returns the winner's Artifact."""
    from edgec import api
    from edgec.frontends import require_trust
    from edgec.package import artifact as files
    from edgec.targets import load_target

    require_trust(source, trust_code)
    options = dict(options or {})
    if not options.get("eval_data"):
        raise InputError("--precision auto needs --eval DATA.npz (inputs and optional 'labels') to hold the "
                         "accuracy budget (--max-accuracy-drop, default 1.0 points)")
    output = Path(output)
    if output.exists() and not force:
        raise InputError(f"output folder {output} already exists: choose another -o or pass --force")
    spec = load_target(target)
    budget = options.get("max_accuracy_drop")
    budget = DEFAULT_ACCURACY_DROP if budget is None else budget
    evaluation = Evaluation.load(options["eval_data"], source, input_shapes, weights, trust_code)
    plain = {k: v for k, v in options.items() if k not in FALLBACK_OPTIONS}
    candidates = [Candidate(spec.name, p, options if p == "int8" else plain) for p in spec.precisions]
    with system.temporary_folder(output) as scratch:
        artifacts = {}
        for candidate in candidates:
            logger.info(f"building {candidate.precision}")
            artifact = build_candidate(source, candidate, scratch / candidate.precision, calibration,
                                       input_shapes=input_shapes, weights=weights, const_inputs=const_inputs,
                                       samples=samples, trust_code=trust_code)
            if artifact is not None:
                artifacts[candidate.label] = artifact
        measure_candidates(candidates, artifacts, device, evaluation, iters)
        choice = choose(candidates, evaluation.baseline, budget)
        if choice.index is None:
            raise InputError(f"--precision auto found no precision for {spec.name}: {choice.why}; "
                             + "; ".join(f"{c.precision}: {c.reason or c.status}" for c in candidates))
        winner = candidates[choice.index]
        logger.info(f"--precision auto chose {winner.precision}: {choice.why}")
        built = artifacts[winner.label]
        built.manifest.choice = PrecisionChoice(
            getattr(device, "label", device) or spec.device or "local", winner.figures.emulated, evaluation.measure, evaluation.baseline,
            budget, [_record(c) for c in candidates], winner.precision, choice.why)
        files.write_manifest(built.path, built.manifest)
        # an int8 winner's measured choices (its scheme by timing among them) replay as made, not measured again
        chosen = built.manifest.quantization.chosen_options() if built.manifest.quantization is not None else {}
        replay = dict(source=source, target=target, precision=winner.precision, input_shapes=list(input_shapes),
                      const_inputs=list(const_inputs), weights=weights, samples=samples,
                      calibration=calibration if winner.precision == "int8" else None, **{**winner.flags, **chosen})
        config.write(built.path / REPLAY_FILE, replay,
                     f"--precision auto chose {winner.precision} ({choice.why}).\nedgec build --config {REPLAY_FILE} "
                     "-o OUT rebuilds it without measuring.")
        system.publish(built.path, output)
        built.path = output
    return built


def _record(candidate: Candidate) -> CandidateRecord:
    f = candidate.figures
    measured = dataclasses.asdict(f) if f else {}
    return CandidateRecord(candidate.precision, candidate.status, candidate.reason, measured.get("size_bytes"),
                           measured.get("p50_ms"), measured.get("p90_ms"), measured.get("accuracy"))
