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


def distill(teacher, student, data: training.Dataset, config: Distill, seed: int,
            progress=quiet_progress) -> DistillRecord:
    """Train `student` in place to match `teacher` on `data`; `progress(epoch, epochs, loss, agreement)`
    is called after each epoch."""
    import torch
    from torch.nn import functional as F

    started = time.perf_counter()
    targets = training.predict(teacher, data)
    before = training.agreement(training.predict(student, data), targets)
    soft_targets = torch.from_numpy(targets)
    temperature = config.temperature
    with training.seeded(seed) as rng:
        optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
        steps = config.epochs * -(-len(data) // config.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        for epoch in range(1, config.epochs + 1):
            student.train()
            order = rng.permutation(len(data))
            total, agreeing = 0.0, 0
            for rows, x, labels in data.batches(config.batch_size, order):
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
            progress(epoch, config.epochs, total / len(data), agreeing / len(data))
    student.eval()
    after = training.agreement(training.predict(student, data), targets)
    return DistillRecord(config.epochs, len(data), data.labels is not None, temperature, config.learning_rate,
                         round(total / len(data), 6), before, after, round(time.perf_counter() - started, 2))
