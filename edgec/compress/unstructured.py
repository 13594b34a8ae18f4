"""Unstructured magnitude pruning with torch.nn.utils.prune, made permanent.

The smallest weights become zeros. Dense kernels multiply zeros as fast as any other number, so
this makes the model smaller to store and ship (it compresses), not faster: the report says so and
shows the latency as measured.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from edgec.compress.plan import Prune
from edgec.compress.structured import prunable_layers

NOTE = "unstructured sparsity: dense kernels gain no speed from zeros; the gain is the compressed (zip) size"


@dataclass
class WeightRecord:
    sparsity: float
    scope: str
    layers: int
    zeros: int
    weights: int

    def to_dict(self) -> dict:
        return asdict(self) | {"note": NOTE}


def zero_weights(module, spec: Prune, keep: tuple[str, ...]) -> list:
    """Mask the smallest-magnitude weights of every conv/linear layer not in `keep` (per layer, or ranked
    across all of them for scope 'global'). The masks stay until `make_permanent`, so training in
    between cannot regrow them. Returns the masked layers."""
    from torch.nn.utils import prune

    layers = [m for name, m in prunable_layers(module).items() if name not in keep]
    if spec.scope == "global":
        prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured,
                                  amount=spec.amount)
    else:
        for layer in layers:
            prune.l1_unstructured(layer, "weight", amount=spec.amount)
    return layers


def make_permanent(layers: list, spec: Prune) -> WeightRecord:
    """Fold each mask into its weight and drop the reparametrization."""
    from torch.nn.utils import prune

    for layer in layers:
        prune.remove(layer, "weight")
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    return WeightRecord(spec.amount, spec.scope, len(layers), zeros, sum(m.weight.numel() for m in layers))
