"""The fallback's search order, with a plain judging function: which layers go float, and when it stops."""
from __future__ import annotations

from edgec.quantize.fallback import GROUPS, search

LAYERS = [f"layer{i}" for i in range(20)]  # most harmful first


def judge_by(harm: dict[str, float]):
    """Accuracy = 100 minus the harm of the layers still quantized (a model is the tuple of float layers)."""
    return lambda excluded: 100.0 - sum(h for name, h in harm.items() if name not in excluded)


def test_releases_the_most_harmful_groups_first_and_stops_within_budget():
    harm = {name: 3.0 if i < 5 else 0.1 for i, name in enumerate(LAYERS)}
    model, excluded, steps = search(LAYERS, lambda ex: ex, judge_by(harm), 100.0, 2.0, ())
    size = -(-len(LAYERS) // GROUPS)
    assert excluded == LAYERS[: 2 * size] and model == tuple(excluded)  # 3 groups of 3: 5 harmful ones within 2
    assert [s["float_layers"] for s in steps[1:]] == [LAYERS[:size], LAYERS[size: 2 * size]]
    assert steps[0]["drop"] > 2.0 and steps[-1]["drop"] <= 2.0
    assert all(s["recovered_points"] > 0 for s in steps[1:])


def test_no_search_when_int8_already_fits():
    model, excluded, steps = search(LAYERS, lambda ex: ex, lambda m: 99.5, 100.0, 1.0, "first")
    assert model == "first" and excluded == [] and len(steps) == 1


def test_gives_up_after_every_layer_is_float():
    model, excluded, steps = search(LAYERS, lambda ex: ex, lambda m: 50.0, 100.0, 1.0, ())
    assert excluded == LAYERS and steps[-1]["drop"] == 50.0
