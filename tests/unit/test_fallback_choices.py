"""When the fallback gives up, the build tries the measured alternatives of its auto choices (calibration
method, bias correction) in their measured order before exiting 3, and records which one it took."""
from __future__ import annotations

from types import SimpleNamespace

from edgec import quantize
from edgec.package.harness.manifest import PolicyFallback, QuantizationRecord, SchemeCandidate, SchemeChoice


def _choice(option: str, chosen: str, fidelity: dict[str, tuple[float | None, float]]) -> SchemeChoice:
    return SchemeChoice(chosen, f"{chosen} is the most faithful", f"--{option.replace('_', '-')} {chosen}",
                        [SchemeCandidate(name, {option: name}, top1, sqnr) for name, (top1, sqnr) in fidelity.items()],
                        {option: chosen})


def _measured() -> QuantizationRecord:
    record = QuantizationRecord("int8", "edgec", method="minmax")
    record.calibration_choice = _choice("calibration_method", "minmax", {
        "minmax": (75.0, 28.4), "percentile": (100.0, 23.7), "entropy": (100.0, 24.1)})
    record.bias_choice = _choice("bias_correction", "on", {"on": (75.0, 28.4), "off": (75.0, 27.5)})
    return record


AUTO = SimpleNamespace(calibration_method="auto", bias_correction="auto")


class Quantizer:
    def __init__(self):
        self.method, self.correct_bias = "minmax", True

    def use(self, method, held_back_too=True):
        assert held_back_too  # as a replay with the method given uses it: from every calibration run
        self.method = method


def _attempt(verifies: set[tuple[str, bool]], quantizer: Quantizer, tried: list):
    """A build that verifies (no fallback needed) only with the given (method, bias correction) pairs."""
    def attempt(measured: QuantizationRecord):
        key = (quantizer.method, quantizer.correct_bias)
        tried.append(key)
        assert measured.method == quantizer.method
        fell_back = None if key in verifies else PolicyFallback({"p": "max_abs_err 0.07"}, [], False, 1.0, 0,
                                                                 gave_up=f"{key} gave up")
        return f"model {key}", QuantizationRecord("int8", "edgec", method=measured.method,
                                                  calibration_choice=measured.calibration_choice,
                                                  bias_choice=measured.bias_choice, policy_fallback=fell_back)
    return attempt


def test_alternatives_follow_the_measured_order_and_keep_given_options():
    measured = _measured()
    # entropy before percentile: equal top-1, more dB; for each method the chosen bias correction first
    assert quantize._alternatives(measured, AUTO) == [
        ("minmax", "off"), ("entropy", "on"), ("entropy", "off"), ("percentile", "on"), ("percentile", "off")]
    given = SimpleNamespace(calibration_method="minmax", bias_correction="auto")
    assert quantize._alternatives(measured, given) == [("minmax", "off")]
    assert quantize._alternatives(measured, SimpleNamespace(calibration_method="entropy", bias_correction="off")) == []


def test_the_first_alternative_that_verifies_is_taken_and_recorded_with_its_replay():
    measured, quantizer, tried = _measured(), Quantizer(), []
    failed = _attempt(set(), quantizer, [])(measured)
    model, record = quantize._next_verifying_choice(_attempt({("entropy", False)}, quantizer, tried), quantizer,
                                                    measured, AUTO, failed)
    assert tried == [("minmax", False), ("entropy", True), ("entropy", False)]
    assert model == "model ('entropy', False)" and record.policy_fallback is None
    assert record.calibration_choice.chosen == "entropy" and record.calibration_choice.replay == \
        "--calibration-method entropy" and record.calibration_choice.options == {"calibration_method": "entropy"}
    assert record.bias_choice.replay == "--bias-correction off"
    assert "minmax with bias correction on did not verify (('minmax', True) gave up)" in record.bias_choice.why
    assert record.calibration_choice.candidates == measured.calibration_choice.candidates  # the measures stay


def test_where_no_alternative_verifies_the_first_build_stays_and_says_what_was_tried():
    measured, quantizer = _measured(), Quantizer()
    failed = _attempt(set(), quantizer, [])(measured)
    model, record = quantize._next_verifying_choice(_attempt(set(), quantizer, []), quantizer, measured, AUTO, failed)
    assert (model, record) == failed and not record.policy_fallback.passed
    assert record.calibration_choice.chosen == "minmax"
    assert "nor do the other measured choices: minmax with bias correction off: ('minmax', False) gave up" in \
        record.policy_fallback.gave_up
