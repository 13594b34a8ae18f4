"""What every training step shares: data in the model's input order, seeded determinism, batched
inference, and BatchNorm re-estimation."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from edgec.errors import InputError
from edgec.quantize.data import load_arrays


@dataclass
class Dataset:
    """Samples stacked along axis 0, one array per model input in input order, and optional labels."""

    inputs: list[np.ndarray]
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.inputs[0])

    def batches(self, size: int, order: np.ndarray | None = None):
        """(row indices, inputs as tensors, labels tensor or None) for consecutive `size`-row slices of `order`."""
        import torch

        order = np.arange(len(self)) if order is None else order
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            labels = None if self.labels is None else torch.from_numpy(self.labels[rows])
            yield rows, tuple(torch.from_numpy(a[rows]) for a in self.inputs), labels


def load(path: str, source_model, names: list[str], what: str) -> Dataset:
    """An .npz keyed by input name (plus optional integer 'labels'), checked against the source model."""
    from edgec.package import samples

    specs, _ = samples.model_interface(source_model)
    arrays, labels = load_arrays(path, specs, what)
    samples.split(specs, arrays, f"{what} data {path}", dynamic_batch=1)  # refuses arrays of the wrong shape
    checked = arrays
    count = len(checked[names[0]])
    if labels is not None:
        if len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"{what} data {path}: 'labels' must be {count} integer class indices, "
                             f"got {len(labels)} of dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    return Dataset([np.ascontiguousarray(checked[n]) for n in names], labels, str(path))


@contextlib.contextmanager
def seeded(seed: int):
    """Same seed, same data order, same weights: deterministic algorithms on one thread, restored afterwards.

    One thread also because it is faster here: a digits epoch took 0.65 s on one thread and 18 s on two
    on a loaded 2-core machine, where two threads wait on each other."""
    import torch

    before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield np.random.default_rng(seed)
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])


def first_output(result):
    """The first output of a module that may return a tuple or list of them."""
    return result[0] if isinstance(result, (tuple, list)) else result


def predict(module, data: Dataset, batch: int = 64) -> np.ndarray:
    """The first output for every sample, in eval mode."""
    import torch

    module.eval()
    with torch.no_grad():
        return np.concatenate([first_output(module(*x)).numpy() for _, x, _ in data.batches(batch)])


def agreement(logits, reference) -> float:
    """Fraction of samples whose top-1 class (over the last axis) matches the reference's."""
    return float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(reference).argmax(-1)))


def reestimate_batchnorm(module, data: Dataset, batch: int = 32) -> int:
    """Recompute every BatchNorm's running mean and variance on `data` (a cumulative average, the rest of
    the model in eval mode). Pruning shifts these statistics; re-estimating them needs no labels.
    Returns how many BatchNorm layers were updated."""
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    module.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        for _, x, _ in data.batches(batch):
            module(*x)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    module.eval()
    return len(norms)
