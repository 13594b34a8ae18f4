"""One compression run: source in, compressed IR model and a record of each step out.

The order is fixed: channel pruning, weight pruning, low-rank factorization, BatchNorm
re-estimation, distillation, then the pruning masks are made permanent and the module exported.
A low-rank factorization alone needs no training and runs on the IR of any source.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import onnx_ir as ir

from edgec import frontends
from edgec import ir as eir
from edgec.compress import distill, export, lowrank, structured, trainable, training, unstructured
from edgec.compress.plan import Plan
from edgec.errors import InputError


@dataclass
class Outcome:
    original: ir.Model
    compressed: ir.Model
    steps: dict = field(default_factory=dict)  # step name -> its record
    notes: list[str] = field(default_factory=list)


def _quiet(*_args, **_kwargs):
    pass


def run(source: str, plan: Plan, specs=(), weights: str | None = None, log=_quiet, progress=None,
        trust_code: bool = False) -> Outcome:
    """Compress `source` as `plan` says; `progress(epoch, epochs, loss, agreement)` follows distillation.
    `trust_code` allows a source that runs code when loaded (model.py, .pt2), as for `edgec build`, and a
    --student model.py."""
    if plan.distill and plan.distill.student:
        frontends.require_trust(plan.distill.student, trust_code)
    if not plan.needs_training:
        original = frontends.load(source, specs, weights, trust_code)
        compressed = eir.clone(original)
        done = lowrank.factorize_graph(compressed, plan.low_rank, plan.keep_layers)
        log(f"low-rank {plan.low_rank}: factorized {len(done)} layer(s) in the ONNX graph")
        return Outcome(original, compressed, {"low_rank": [f.to_dict() for f in done]}, _low_rank_notes(done))

    source_module = trainable.load(source, specs, weights, trust_code)
    names = source_module.input_names
    graph = source_module.source_model
    train = training.load(plan.distill.train_data, graph, names, "training") if plan.distill else None
    calibration = training.load(plan.calibration, graph, names, "calibration") if plan.calibration else train
    teacher = copy.deepcopy(source_module.module).eval()
    student = _student(plan, source_module)
    outcome = Outcome(graph, graph)
    with training.seeded(plan.seed):
        masked = _shrink(student, source_module.example(), plan, calibration, outcome, log)
        if plan.distill:
            record = distill.distill(teacher, student, train, plan.distill, plan.seed, progress or distill.quiet_progress)
            outcome.steps["distill"] = record.to_dict()
            log(f"distilled {record.epochs} epochs on {record.samples} samples: teacher agreement "
                f"{100 * record.teacher_agreement_before:.1f} % -> {100 * record.teacher_agreement_after:.1f} %")
        if masked:
            outcome.steps["weights"] = unstructured.make_permanent(masked, plan.prune).to_dict()
            outcome.notes.append(unstructured.NOTE)
    outcome.compressed = export.to_ir(student, source_module)
    return outcome


def _shrink(student, example: tuple, plan: Plan, calibration, outcome: Outcome, log) -> list:
    """Prune and factorize `student` in place, then re-estimate its BatchNorm statistics; returns the
    layers whose weight-pruning masks are still to be made permanent."""
    if plan.prune and plan.prune.kind == "channels":
        record = structured.prune_channels(student, example, plan.prune, plan.importance, plan.keep_layers, calibration)
        outcome.steps["channels"] = record.to_dict()
        log(f"channel pruning {plan.prune.amount}: {record.channels_before} -> {record.channels_after} channels")
    masked = (unstructured.zero_weights(student, plan.prune, plan.keep_layers)
              if plan.prune and plan.prune.kind == "weights" else [])
    if plan.low_rank is not None:
        outputs = structured.output_layers_of(student, example)
        done = lowrank.factorize_module(student, plan.low_rank, plan.keep_layers, outputs)
        outcome.steps["low_rank"] = [f.to_dict() for f in done]
        outcome.notes += _low_rank_notes(done)
        log(f"low-rank {plan.low_rank}: factorized {len(done)} layer(s)")
    if not (plan.prune or plan.low_rank):
        return masked
    if calibration is None:
        outcome.notes.append("BatchNorm statistics were not re-estimated: pass --calibration (or --train-data)")
    else:
        outcome.steps["batchnorm_reestimated"] = training.reestimate_batchnorm(student, calibration)
        log(f"re-estimated BatchNorm statistics on {len(calibration)} samples of {calibration.source}")
    return masked


def _student(plan: Plan, source_module: trainable.Trainable):
    """The module to compress: the source itself, or the user's own smaller architecture (--student),
    which must take the same inputs and give outputs of the same shape."""
    if not (plan.distill and plan.distill.student):
        return source_module.module
    import torch

    from edgec.frontends import torch as torch_frontend

    student = torch_frontend.instantiate(plan.distill.student)
    example = source_module.example()
    with torch.no_grad():
        expected = training.first_output(source_module.module.eval()(*example)).shape
        try:
            got = training.first_output(student.eval()(*example)).shape
        except Exception as exc:
            raise InputError(f"--student {plan.distill.student} does not run on the source model's inputs: "
                             f"{type(exc).__name__}: {exc}") from exc
    if got != expected:
        raise InputError(f"--student {plan.distill.student} outputs {list(got)}, the source model {list(expected)}: "
                         "the student must give outputs of the same shape")
    return student


def _low_rank_notes(done: list) -> list[str]:
    if done:
        return []
    return ["low-rank: no layer has a factorization with fewer MACs at this energy; a lower --low-rank keeps "
            "fewer singular values"]
