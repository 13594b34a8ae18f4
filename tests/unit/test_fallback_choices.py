"""When the fallback gives up, the build tries the measured alternatives of its auto choices (calibration
method, bias correction, then the target's int8 scheme) in their measured order before exiting 3, and
records which one it took."""
from __future__ import annotations

from dataclasses import dataclass
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
        ("minmax", "off"), ("entropy", "on"), ("entropy", "off"), ("percentile", "on"), ("percentile", "off"),
        ("mean-minmax", "on"), ("mean-minmax", "off")]  # a method the record did not measure comes last
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


@dataclass(frozen=True)
class SchemeOption:  # the build's options, as far as the scheme retry reads them
    int8_scheme: str = "auto"


SCHEMES = SimpleNamespace(candidates={"u8u8": {}, "u8s8-7bit-first": {}, "u8s8-7bit": {}, "s8-dynamic": {}})


def _scheme_attempt(verifies: set[str], tried: list):
    """A build that verifies only with the given schemes; the auto one chose u8s8-7bit (most faithful, measured
    with two others; s8-dynamic left too many MACs float and was not measured)."""
    measured = _choice("int8_scheme", "u8s8-7bit", {"u8s8-7bit": (None, 1.6), "u8u8": (None, 0.9),
                                                     "u8s8-7bit-first": (None, 1.2)})

    def attempt(ranges: QuantizationRecord, options=SchemeOption()):
        tried.append(options.int8_scheme)
        name = "u8s8-7bit" if options.int8_scheme == "auto" else options.int8_scheme
        assert ranges.method == "minmax"  # each scheme with the measured calibration method
        fell_back = PolicyFallback({"mask": "mask_iou 0"}, [], name in verifies, 0.93, 0,
                                   gave_up="" if name in verifies else f"{name} gave up")
        choice = measured if options.int8_scheme == "auto" else _choice("int8_scheme", name, {})
        return f"model {options.int8_scheme}", QuantizationRecord("int8", "edgec", method=ranges.method, scheme_choice=choice,
                                                   policy_fallback=fell_back)
    return attempt


def test_the_next_measured_scheme_that_verifies_is_taken_and_replays():
    tried = []
    attempt = _scheme_attempt({"u8u8"}, tried)
    failed = attempt(_measured())
    options = SchemeOption()
    model, record = quantize._next_verifying_scheme(attempt, SCHEMES, _measured(), options, failed)
    assert tried == ["auto", "u8s8-7bit-first", "u8u8"]  # by measured SQNR; s8-dynamic was never measured
    assert model == "model u8u8" and record.policy_fallback.passed
    assert record.scheme_choice.chosen == "u8u8" and record.scheme_choice.replay == "--int8-scheme u8u8"
    assert "u8s8-7bit did not verify (u8s8-7bit gave up), so the build took the next measured scheme that does: " \
        "u8u8" in record.scheme_choice.why
    assert [c.name for c in record.scheme_choice.candidates] == ["u8s8-7bit", "u8u8", "u8s8-7bit-first"]


def test_no_scheme_is_retried_when_given_and_the_failure_names_every_one_tried():
    tried = []
    attempt = _scheme_attempt(set(), tried)
    failed = attempt(_measured())
    assert quantize._next_verifying_scheme(attempt, SCHEMES, _measured(), SchemeOption("u8u8"),
                                           failed) == failed and tried == ["auto"]
    model, record = quantize._next_verifying_scheme(attempt, SCHEMES, _measured(),
                                                    SchemeOption(), failed)
    assert model == "model auto" and not record.policy_fallback.passed
    assert record.policy_fallback.gave_up == ("u8s8-7bit gave up; nor do the other measured schemes: scheme "
                                              "u8s8-7bit-first: u8s8-7bit-first gave up; scheme u8u8: u8u8 gave up")
