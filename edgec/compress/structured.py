"""Structured channel pruning with Torch-Pruning's dependency graph.

Removing an output channel of one layer removes the matching input channel of every layer that reads
it, and the matching channel of whatever is tied to it: residual adds, concatenations, depthwise
groups, BatchNorm. Torch-Pruning traces those ties from the autograd graph, so no graph walk of our
own decides them. The layers that produce the model's outputs keep their channels (the output
shape is the model's interface), and so do the layers the user names.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgec.compress import training
from edgec.compress.plan import Prune
from edgec.errors import InputError, require

SHOWN_NAMES = 8  # how many layer names an error lists
TAYLOR_SAMPLES = 64  # gradients on this many samples rank the channels; more only costs time


@dataclass
class ChannelRecord:
    ratio: float
    scope: str
    importance: str
    kept_layers: list[str]  # whole, by request or because they produce an output
    channels_before: int
    channels_after: int

    def to_dict(self) -> dict:
        return asdict(self)


def prunable_layers(module) -> dict[str, object]:
    """Convolutions and linear layers by module name: what channel pruning can shrink."""
    import torch

    return {name: m for name, m in module.named_modules()
            if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))}


def output_layers_of(module, example: tuple) -> list:
    """The prunable layers nearest to each model output, found by walking back from the sinks of
    Torch-Pruning's traced graph through operators that carry channels unchanged (BatchNorm,
    activations, adds, reshapes)."""
    import torch

    tp = require("torch_pruning", "compress")
    module.eval()
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=example)
    layers, seen = [], set()
    stack = [node for node in graph.module2node.values() if not node.outputs]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node.module, (torch.nn.modules.conv._ConvNd, torch.nn.Linear)):
            layers.append(node.module)
        else:
            stack.extend(node.inputs)
    return layers


def prune_channels(module, example: tuple, spec: Prune, importance: str, keep: tuple[str, ...],
                   data: training.Dataset | None) -> ChannelRecord:
    """Remove `spec.amount` of the output channels of each prunable layer (or of all of them ranked
    together, with scope 'global'), in place."""
    tp = require("torch_pruning", "compress")
    layers = prunable_layers(module)
    unknown = [name for name in keep if name not in layers]
    if unknown:
        names = ", ".join(list(layers)[:SHOWN_NAMES]) + (" ..." if len(layers) > SHOWN_NAMES else "")
        raise InputError(f"--keep-layer '{unknown[0]}' is not a prunable layer of this model; its layers are: {names}")
    kept = [layers[name] for name in keep] + output_layers_of(module, example)
    pruner = tp.pruner.BasePruner(
        module, example, importance=_importance(tp, importance), pruning_ratio=spec.amount,
        global_pruning=spec.scope == "global", ignored_layers=kept,
    )
    names = {m: n for n, m in layers.items()}
    _refuse_emptied_layers(pruner.DG, names, spec)
    if importance == "taylor":
        _accumulate_gradients(module, example, data)
    before = _channels(layers.values())
    pruner.step()
    module.zero_grad(set_to_none=True)
    return ChannelRecord(spec.amount, spec.scope, importance, sorted(names[m] for m in kept if m in names),
                         before, _channels(layers.values()))


def _refuse_emptied_layers(graph, names: dict, spec: Prune) -> None:
    """Torch-Pruning silently leaves a channel group whole when pruning it would take every channel of a
    layer (a 4-channel layer at 0.8 keeps int(4 * 0.2) = 0; global ranking can put a whole layer below the
    threshold). The user asked for that layer to shrink, so it is refused instead: the check Torch-Pruning
    asks before each group's pruning raises, naming the layer."""
    check = graph.check_pruning_group

    def refusing(group) -> bool:
        if check(group):
            return True
        emptied = next((dep.target.module for dep, idxs in group
                        if dep.target.module in names and len(idxs) >= _out_channels(dep.target.module)), None)
        name = names.get(emptied, "a layer tied to " + names.get(group[0].dep.target.module, "it"))
        raise InputError(f"--prune channels:{spec.amount}{':global' if spec.scope == 'global' else ''} would remove "
                         f"the whole layer {name}: lower the ratio, or pass --keep-layer {name}")

    graph.check_pruning_group = refusing


def _importance(tp, name: str):
    return {"l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
            "bn": tp.importance.BNScaleImportance,
            "taylor": tp.importance.GroupTaylorImportance}[name]()


def _accumulate_gradients(module, example, data: training.Dataset | None) -> None:
    """Taylor importance needs gradients. Without labels, the model's own top-1 is the target: the
    loss of moving away from what the unpruned model predicts."""
    import torch
    from torch.nn import functional as F

    if data is None:
        raise InputError("--importance taylor needs data: pass --calibration or --train-data")
    module.zero_grad(set_to_none=True)
    for _, x, labels in data.batches(32, np.arange(min(len(data), TAYLOR_SAMPLES))):
        logits = training.first_output(module(*x))
        flat = logits.reshape(-1, logits.shape[-1])
        target = labels.reshape(-1) if labels is not None else flat.argmax(-1).detach()
        F.cross_entropy(flat, target).backward()


def _out_channels(layer) -> int:
    return layer.out_features if hasattr(layer, "out_features") else layer.out_channels


def _channels(layers) -> int:
    return sum(_out_channels(m) for m in layers)
