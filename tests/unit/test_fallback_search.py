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


class Stand:
    """The fallback's collaborators as plain functions: a quantizer whose model is the tuple of float layers,
    a judge failing until `needed` is float, and MACs shared equally by the layers in graph order."""

    def __init__(self, needed: set[str], in_order: list[str]):
        self.needed, self.in_order, self.float_layers, self.runs = needed, in_order, (), []

    def run(self, excluded=()):
        self.runs.append(excluded)
        return excluded

    def failures(self, model):
        return {} if self.needed <= set(model or ()) else {"out": "mask_iou 0.5 (limit 0.9)"}

    def int8_share(self, float_nodes):
        return 1.0 - len(set(float_nodes)) / len(self.in_order)

    def added_bytes(self, float_nodes):
        return 3 * len(set(float_nodes))

    def latency_ms(self, model):
        return 1.0


def test_policy_fallback_floats_the_layers_nearest_the_inputs_where_the_most_harmful_do_not_verify():
    from edgec.quantize.fallback import to_verify

    layers = [type("Layer", (), {"name": name}) for name in reversed(LAYERS)]  # harm ranks the deep ones first
    stand = Stand(needed={"layer0", "layer1", "layer2"}, in_order=LAYERS)  # a stem amplified by all after it
    model, record = to_verify(stand, layers, stand, stand, "plain", {"out": "mask_iou 0.5 (limit 0.9)"})
    assert record.passed and record.order == "nearest the inputs" and record.float_layers == LAYERS[:4]
    assert model == tuple(LAYERS[:4]) and record.int8_mac_share == 0.8
    # the harm order went up to the 80 % MAC floor (4 of 20 layers) first
    assert stand.runs == [tuple(reversed(LAYERS))[:n] for n in (1, 2, 4)] + [tuple(LAYERS[:n]) for n in (1, 2, 4)]


def test_policy_fallback_gives_up_with_both_orders_named():
    from edgec.quantize.fallback import to_verify

    stand = Stand(needed={"layer10"}, in_order=LAYERS)
    model, record = to_verify(stand, [type("Layer", (), {"name": n}) for n in LAYERS[::-1]], stand, stand, "plain",
                              {"out": "x"})
    assert model == "plain" and not record.passed and record.float_layers == []
    assert record.gave_up.startswith("most harmful first: keeping 8 layers") and "nearest the inputs first" in record.gave_up


def test_policy_fallback_takes_as_many_layers_as_the_floor_allows_where_doubling_crosses_it():
    """30 layers of equal MACs: the 80 % floor allows 6 float. Doubling goes 1, 2, 4, then 6, not 8 (the
    corpus PP-OCR classifier on onnxruntime verified at 89 of its most harmful layers, 80.9 % int8, where
    128 would have left 32 %)."""
    from edgec.quantize.fallback import to_verify

    layers = [f"layer{i}" for i in range(30)]
    stand = Stand(needed={"layer5"}, in_order=layers)
    model, record = to_verify(stand, [type("Layer", (), {"name": n}) for n in layers], stand, stand, "plain",
                              {"out": "x"})
    assert record.passed and record.float_layers == layers[:6] and record.int8_mac_share == 0.8
    assert [len(run) for run in stand.runs] == [1, 2, 4, 6]
