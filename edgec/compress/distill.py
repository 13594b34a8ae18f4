"""Knowledge distillation: the student learns the teacher's temperature-softened outputs.

Loss = T^2 * KL(student/T || teacher/T) over the last axis of the first output, plus cross-entropy
where the data has labels; without labels (the usual case) the teacher alone teaches. Seeded and
deterministic on CPU: the same data, seed and epochs give the same weights.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from edgec.compress import training
from edgec.compress.plan import Distill


@dataclass
class DistillRecord:
    epochs: int
    samples: int
    labels_used: bool
    temperature: float
    learning_rate: float
    final_loss: float
    teacher_agreement_before: float  # top-1 agreement with the teacher on the training data
    teacher_agreement_after: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def quiet_progress(epoch: int, epochs: int, loss: float, agreement: float) -> None:
    pass


class Distillation:
    """The teacher's outputs on `data`, computed once, and training rounds that teach them to a student:
    one round for the whole of `config.epochs`, or one per pruning step. `progress(epoch, epochs, loss,
    agreement)` counts epochs over all rounds."""

    def __init__(self, teacher, data: training.Dataset, config: Distill, seed: int, progress=quiet_progress):
        self.data, self.config, self.seed, self.progress = data, config, seed, progress
        self.targets = training.predict(teacher, data)
        self.epochs_done, self.loss, self.seconds = 0, float("nan"), 0.0
        self.agreement_before: float | None = None

    def train(self, student, epochs: int) -> None:
        """`epochs` more epochs of `student`, in place, on a fresh cosine learning-rate schedule."""
        import torch
        from torch.nn import functional as F

        started = time.perf_counter()
        if self.agreement_before is None:
            self.agreement_before = self.agreement(student)
        config, data, temperature = self.config, self.data, self.config.temperature
        soft_targets = torch.from_numpy(self.targets)
        with training.seeded(self.seed + self.epochs_done) as rng:
            optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * -(-len(data) // config.batch_size))
            for _ in range(epochs):
                student.train()
                total, agreeing = 0.0, 0
                for rows, x, labels in data.batches(config.batch_size, rng.permutation(len(data))):
                    teacher_logits = soft_targets[rows]
                    logits = training.first_output(student(*x))
                    loss = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(teacher_logits / temperature, -1),
                                    reduction="batchmean", log_target=True) * temperature**2
                    if labels is not None:
                        loss = loss + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    total += loss.item() * len(rows)
                    agreeing += int((logits.argmax(-1) == teacher_logits.argmax(-1)).sum())
                self.epochs_done += 1
                self.loss = total / len(data)
                self.progress(self.epochs_done, config.epochs, self.loss, agreeing / len(data))
        student.eval()
        self.seconds += time.perf_counter() - started

    def agreement(self, student) -> float:
        """Top-1 agreement of `student` with the teacher on the training data."""
        return training.agreement(training.predict(student, self.data), self.targets)

    def record(self, student) -> DistillRecord:
        started = time.perf_counter()
        after = self.agreement(student)
        return DistillRecord(self.epochs_done, len(self.data), self.data.labels is not None, self.config.temperature,
                             self.config.learning_rate, round(self.loss, 6), self.agreement_before, after,
                             round(self.seconds + time.perf_counter() - started, 2))


def distill(teacher, student, data: training.Dataset, config: Distill, seed: int,
            progress=quiet_progress) -> DistillRecord:
    """Train `student` in place to match `teacher` on `data` for `config.epochs`."""
    distillation = Distillation(teacher, data, config, seed, progress)
    distillation.train(student, config.epochs)
    return distillation.record(student)
