"""Quantization for every target: one engine, each target's own int8 scheme, and the proof.

`quantize_for_target` is the single entry point the build calls. int8 yields a QDQ graph in
the common IR that follows the target's `[quantization]` scheme; every backend lowers that.
fp16 passes the float model through: each backend stores or runs fp16 its own way.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
from pathlib import Path
from typing import Callable

import onnx_ir as ir

from edgec import system
from edgec.errors import InputError, UnsupportedError
from edgec.package.harness.manifest import PolicyFallback, QuantizationRecord, SchemeChoice
from edgec.quantize.data import CalibrationData, load_eval
from edgec.quantize.qdq import Quantizer, Scheme

AUTO_SCHEME = "auto"  # --int8-scheme: measure the target's candidates and choose
AUTO_METHOD = "auto"  # --calibration-method: measure minmax, percentile, entropy and mean-minmax on held-back samples
AUTO_BIAS = "auto"  # --bias-correction: measure the int8 graph with and without it on held-back samples
EDGEC = "edgec"  # the one candidate of a target without scheme candidates, measured against a backend's own
PER_CHANNEL_OPSET = 13  # DequantizeLinear's `axis` (per-channel scales) exists from opset 13

logger = logging.getLogger(__name__)

MISSING_CALIBRATION = (
    "int8 needs calibration data: pass --calibration FILE.npz (arrays keyed by input name), a .npy, "
    "a folder of images with --preprocess, or --calibration random to calibrate on noise"
)


def check_options(precision: str, calibration, options) -> None:
    """Refuse inconsistent quantization options before any work is spent."""
    if precision == "int8" and calibration is None:
        raise InputError(MISSING_CALIBRATION)
    if getattr(options, "max_accuracy_drop", None) is not None:
        if precision != "int8":
            raise InputError("--max-accuracy-drop applies to --precision int8 only")
        if not options.eval_data:
            raise InputError("--max-accuracy-drop needs --eval PATH: an .npz of inputs (and optional 'labels')")
    if getattr(options, "nncf_float_layers", None) and (precision != "int8" or options.quantizer == "edgec"):
        raise InputError("--nncf-float-layers applies to NNCF's int8: build --precision int8 with --quantizer nncf "
                         "or auto, or drop it")


def _scheme_for_opset(model: ir.Model, scheme: Scheme) -> Scheme:
    """Per-tensor weights for a model still below the opset per-channel scales need.

    The build converts older models before the passes (passes.UpgradeOpsetPass); a model that onnx's
    converter could not convert arrives here unchanged.
    """
    from edgec.ir import opset

    if not scheme.per_channel or opset.default_opset(model) >= PER_CHANNEL_OPSET:
        return scheme
    logger.warning(f"the opset-{opset.default_opset(model)} model could not be converted to opset "
                   f"{PER_CHANNEL_OPSET}, which per-channel int8 needs: its weights are quantized per tensor")
    return dataclasses.replace(scheme, per_channel=False)


def _check_scheme_option(target, scheme: Scheme, given: str) -> None:
    if given != AUTO_SCHEME and given not in scheme.candidates:
        known = ", ".join(scheme.candidates) or "none: its one scheme is used"
        raise InputError(f"--int8-scheme {given}: not a candidate of target {target.name} (it has {known})")


def _fitting_candidates(quantizer: Quantizer, macs, given: str) -> dict[str, Scheme]:
    """The target's scheme candidates that leave at least the int8 share of this model's MACs in int8 (one
    that quantizes MatMul/Gemm only is none for a CNN); naming one that does not is refused."""
    from edgec.quantize.fallback import MIN_INT8_MAC_SHARE

    every = {name: quantizer.scheme.variant(name) for name in quantizer.scheme.candidates}
    shares = {name: macs.int8_share((*quantizer.always_float,
                                     *scheme.leaves_float(quantizer.mac_layers, quantizer.computed_weights)))
              for name, scheme in every.items()}
    if given in every and shares[given] < MIN_INT8_MAC_SHARE:
        raise UnsupportedError(f"--int8-scheme {given} quantizes only {', '.join(every[given].ops)}: "
                               f"{shares[given]:.0%} of this model's MACs, under {MIN_INT8_MAC_SHARE:.0%}; "
                               "choose another scheme or leave it auto")
    return {name: scheme for name, scheme in every.items() if shares[name] >= MIN_INT8_MAC_SHARE}


def _refuse_under_floor(quantizer: Quantizer, macs, target_name: str) -> None:
    """Refuse int8 where the target's scheme (no candidate of it doing better) leaves more than the floor's
    share of the MACs float (a speaker encoder's LSTMs under a scheme without them): such an artifact would be
    int8 in name only. A backend's own quantizer is not asked: it is offered the same candidates, and NNCF's
    int8 LSTMSequence (int8 weights, its input quantized) runs as an f32 reference kernel in OpenVINO 2026.4's
    CPU plugin on an AVX2 host (ref_any_f32): int8 weights, float MACs."""
    from edgec.quantize.fallback import MIN_INT8_MAC_SHARE

    share = macs.int8_share(quantizer.float_layers)
    if share >= MIN_INT8_MAC_SHARE:
        return
    kinds = sorted({quantizer.mac_layers[name] for name in quantizer.float_layers if name in quantizer.mac_layers})
    raise UnsupportedError(f"int8 on {target_name} would leave {1 - share:.0%} of this model's multiply-accumulates "
                           f"float ({', '.join(kinds)} stay float in its int8 schemes), under the "
                           f"{MIN_INT8_MAC_SHARE:.0%} int8 an int8 artifact keeps: build --precision fp16")


def _choose_scheme(model: ir.Model, quantizer: Quantizer, backend, engines: list, given: str,
                   calibration: CalibrationData, current: ir.Model, fitting: dict[str, Scheme], kinds: list[str],
                   judge, macs, strict: bool) -> tuple[ir.Model, SchemeChoice, PolicyFallback | None]:
    """The QDQ graph of the candidate `given`, or of the one measured best (quantize/choose.py) among the
    `fitting` scheme candidates edgec builds and the backend's own int8 `engines` (where one of those wins:
    `current`); `current`, quantized with the target's own scheme, serves the candidate that changes nothing.
    An engine's int8 wins only where it verifies (`judge`), with the most harmful layers of edgec's graph of
    its scheme kept float where it can keep layers float (`Engine.keep_float`; not when `strict`, for
    --strict-precision); that fallback's record comes third."""
    from edgec.quantize import choose, report
    from edgec.quantize.fallback import MIN_INT8_MAC_SHARE

    base = quantizer.scheme
    plain = dataclasses.replace(base, candidates={})
    # a candidate with a model family's patterns is built by the backend's own quantizer only
    schemes = {name: scheme for name, scheme in fitting.items() if not scheme.model_type} or {EDGEC: plain}
    if given in fitting and given not in schemes:
        raise InputError(f"--int8-scheme {given} is built by the {backend.name} backend's own quantizer only: "
                         "choose it with --quantizer, or leave --int8-scheme auto")
    own = {engine.name: engine for engine in engines}

    def quantize(name: str) -> ir.Model:
        quantizer.scheme = schemes[name]
        return current if quantizer.scheme == plain else quantizer.run()

    def choice(name: str, why: str, measured: list) -> SchemeChoice:
        chosen = own[name].options if name in own else {
            **backend.qdq_options(), **({"int8_scheme": name} if name in base.candidates else {})}
        return SchemeChoice(name, why, _flags(chosen), measured, chosen)

    if given != AUTO_SCHEME:
        return quantize(given), choice(given, "given", []), None
    if len(schemes) == 1 and not own:  # the others would leave too many MACs float: nothing to measure
        (only,) = schemes
        return quantize(only), choice(only, f"the one candidate that keeps {MIN_INT8_MAC_SHARE:.0%} of this "
                                            "model's MACs in int8", []), None
    graphs = {name: quantize(name) for name in schemes}
    openers = {name: backend.int8_opener(graph) for name, graph in graphs.items()}
    if all(opener is None for opener in openers.values()):
        raise UnsupportedError(f"int8 candidates are measured with the runtime's own kernels, which the "
                               f"{backend.name} backend cannot run on this host; list one scheme for its target")
    for name in [name for name, opener in openers.items() if opener is None]:
        logger.info(f"int8 {name}: the {backend.name} backend cannot run this model's graph: not measured")
        del openers[name]
    overrides = {name: base.candidates.get(name, {}) for name in schemes} | {
        name: engine.options for name, engine in own.items()}
    measured = choose.measure(model, openers | {name: engine.open for name, engine in own.items()}, overrides,
                              calibration, kinds)
    chosen, why = choose.choose(measured)
    failed = judge.failures_of(own[chosen.name].run) if chosen.name in own and judge is not None else {}
    unrepaired = "no layer float"
    if failed and own[chosen.name].keep_float is not None and not strict:
        engine = own[chosen.name]
        layers = report.layer_errors(model, graphs.get(engine.options.get("int8_scheme"), current), calibration)
        repaired, record = _engine_fallback(engine, layers, judge, macs, failed)
        if record.passed:
            logger.info(f"int8 {chosen.name}: {why}; it verifies with {len(record.float_layers)} layer(s) float")
            own[chosen.name] = repaired
            return current, choice(chosen.name, f"{why}; it verifies with {len(record.float_layers)} layer(s) "
                                   "float", measured), record
        unrepaired = f"layers float ({record.gave_up})"
    if failed:
        unverified = chosen
        chosen, why = choose.choose([c for c in measured if c.name in schemes])
        why = (f"{unverified.name} does not verify ({_listed(failed)}), "
               f"with {unrepaired}; of edgec's: {why}")
    logger.info(f"int8 {chosen.name}: {why}")
    if chosen.name in own:
        return current, choice(chosen.name, why, measured), None
    quantizer.scheme = schemes[chosen.name]
    return graphs[chosen.name], choice(chosen.name, why, measured), None


def _engine_fallback(engine, layers: list, judge, macs, failed: dict[str, str]):
    """The backend's own int8 `engine` with the fewest of `layers` (most harmful first), or of those nearest
    the inputs, float for its outputs to pass the policy (fallback.to_verify): (engine, record)."""
    from edgec.quantize import fallback

    as_quantizer = fallback.EngineFallback(engine, judge)
    return fallback.to_verify(as_quantizer, layers, as_quantizer, macs, engine, failed)


def _verified_engine(model: ir.Model, scheme: Scheme, calibration: CalibrationData, backend, options, judge,
                     record: QuantizationRecord) -> None:
    """Where the backend quantizes on its own (`--quantizer nncf`), its int8 judged by the verification policy
    before lowering; where it fails, the fallback keeps the most harmful layers of edgec's graph of the same
    scheme float in it (or --strict-precision refuses), and `record` gets the choice that replays them."""
    from edgec.quantize import fallback, report

    engine = backend.given_int8(model, scheme, calibration, options)
    failed = judge.failures_of(engine.run, " with the runtime's int8 kernels") if engine and judge else {}
    if not failed:
        return
    with system.scratch("quant") as tmp:  # edgec's own graph of the scheme, to rank the layers by harm
        quantizer = Quantizer(model, scheme, calibration, "minmax", Path(tmp))
        layers = report.layer_errors(model, quantizer.run(), calibration)
    if options.strict_precision:
        raise _strict_refusal(failed, layers)
    macs = fallback.MacShare(model, next(calibration.feeds()))
    repaired, record.policy_fallback = _engine_fallback(engine, layers, judge, macs, failed)
    record.int8_mac_share = round(record.policy_fallback.int8_mac_share, 4)
    if record.policy_fallback.passed:
        why = f"given; it verifies with {len(record.policy_fallback.float_layers)} layer(s) float"
        record.scheme_choice = SchemeChoice(repaired.name, why, _flags(repaired.options), [], repaired.options)


def _listed(failed: dict[str, str]) -> str:
    """What failed verification, output by output."""
    return "; ".join(f"{name}: {what}" for name, what in failed.items())


def _strict_refusal(failed: dict[str, str], layers: list) -> UnsupportedError:
    """--strict-precision's refusal of an int8 model that does not verify, naming its most harmful layers."""
    worst = ", ".join(f"{layer.name} ({layer.harm_db:.1f} dB)" for layer in layers[:5])
    return UnsupportedError(f"int8 does not verify ({_listed(failed)}) and --strict-precision keeps every layer "
                            f"int8; the most harmful layers: {worst}. Drop --strict-precision to keep them float, "
                            "or build fp16")


def _flags(values: dict) -> str:
    """The command-line flags that set `values` (declared options by name)."""
    from edgec.options import every_option

    declared = every_option()
    return " ".join(f"{declared[name].cli_flag} {value}" for name, value in values.items())


def _choose_on_held_back(quantizer: Quantizer, option: str, values: tuple[str, ...],
                         apply: Callable[[str], None], unmeasured: str, held_back_judge,
                         meanwhile: Callable[[], None] = lambda: None) -> SchemeChoice:
    """Quantize with each value of `option` (`apply` sets it on the quantizer, whose ranges come from the
    calibration part), judge each on the held-back runs against fp32 (`held_back_judge`, a choose.HeldBack) and keep
    the most faithful; with too few runs to hold any back, `unmeasured`. The record replays the value chosen.
    `meanwhile`: work that does not depend on the choice, done while the last values are judged."""
    from edgec.quantize import choose

    held_back = quantizer.ranges.held_back
    if not held_back:
        apply(unmeasured)
        return _measured_choice(option, unmeasured, f"too few calibration runs ({quantizer.data.count}) to hold "
                                f"any back and judge: {unmeasured}", [])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # each graph judged while the quantizer makes the next
        judged = []
        for value in values:
            apply(value)
            judged.append(pool.submit(held_back_judge.measure, option, {value: quantizer.run()}))
        meanwhile()
        measured = [candidate for future in judged for candidate in future.result()]
    chosen, why = choose.most_faithful(measured, len(held_back))
    logger.info(f"{option.replace('_', ' ')} {chosen.name}: {why}")
    apply(chosen.name)
    return _measured_choice(option, chosen.name, why, measured)


def _measured_choice(option: str, value: str, why: str, measured: list) -> SchemeChoice:
    """The record of an option's value chosen, with the flags that replay it (as the scheme choice's)."""
    chosen = {option: value}
    return SchemeChoice(value, why, _flags(chosen), measured, chosen)


def output_kinds(model: ir.Model, judge) -> list[str]:
    """What each output means: the verification policy's word (the user's --output-kind included), or
    the graph's where no judge is given."""
    from edgec.package import policy

    return [judge.policy.policy(v.name).kind if judge is not None else policy.classify(v)
            for v in model.graph.outputs]


def _choose_ranges_and_bias(model: ir.Model, quantizer: Quantizer, record: QuantizationRecord, options,
                            kinds: list[str]) -> None:
    """The calibration method and whether biases are corrected, each given or measured (`auto`, recorded
    in `record`): the method judged with the correction on unless it is off, the correction with the
    method chosen. The quantizer then uses the method's ranges from every run."""
    from edgec.quantize.calibrate import METHODS
    from edgec.quantize.choose import HeldBack

    held_back_judge = HeldBack(model, quantizer.ranges.held_back, kinds, quantizer.ranges.held_back_outputs)
    quantizer.correct_bias = options.bias_correction != "off"
    if options.calibration_method == AUTO_METHOD:
        record.calibration_choice = _choose_on_held_back(
            quantizer, "calibration_method", METHODS, lambda m: quantizer.use(m, held_back_too=False), "minmax",
            held_back_judge)
    if options.bias_correction == AUTO_BIAS:
        quantizer.use(quantizer.method, held_back_too=False)
        record.bias_choice = _choose_on_held_back(
            quantizer, "bias_correction", ("on", "off"),
            # unjudged, on: the judge keeps the exact correction on MobileNetV2 on every target (+1.1 to
            # +1.4 dB) and on FER on onnxruntime and tflite-arm, and it turns the corpus MobileNetV2
            # calibrated on its 7 photos from 6 to 7 of them agreeing with fp32 on tflite-arm
            lambda value: setattr(quantizer, "correct_bias", value == "on"), "on", held_back_judge,
            meanwhile=lambda: _graph_from_every_run(quantizer))
    quantizer.use(quantizer.method)
    record.method = quantizer.method


def _graph_from_every_run(quantizer: Quantizer) -> None:
    """The chosen method's ranges from every calibration run, and their graph made while the bias choice is
    judged: the correction is an edit of that graph (quantize/bias.py), so the graph need not wait for it."""
    quantizer.use(quantizer.method)
    quantizer.run()


def quantize_for_target(model: ir.Model, target, precision: str, calibration: CalibrationData | None, backend,
                        options, judge=None) -> tuple[ir.Model, QuantizationRecord | None]:
    """Return the model the backend lowers and the manifest's `quantization` record.

    `judge` (a fallback.PolicyJudge) checks the int8 model against the verification policy; where it
    fails, the most harmful layers stay float until it passes (or --strict-precision refuses), and where
    that gives up, the other measured calibration methods and bias corrections are tried.
    """
    if precision == "fp16":
        return model, QuantizationRecord("fp16", "the backend's own (float16 weights)", weights="float16")
    if precision != "int8":
        return model, None
    check_options(precision, calibration, options)
    record = QuantizationRecord("int8", f"{backend.name} (see backend)", calibration=calibration.describe())
    if calibration.random:
        logger.warning("calibrating on random noise (--calibration random): expect poor int8 accuracy")
        record.warning = "calibrated on random noise"
    scheme = Scheme.from_target(target.quantization)
    scheme = _scheme_for_opset(model, scheme)
    _check_scheme_option(target, scheme, options.int8_scheme)
    if backend.quantizes_itself(options):
        if options.max_accuracy_drop is None:  # with a budget, the engine's own accuracy control judges
            given = scheme.variant(options.int8_scheme) if options.int8_scheme in scheme.candidates else scheme
            _verified_engine(model, given, calibration, backend, options, judge, record)
        return model, record

    method = options.calibration_method
    record.scheme, record.method, record.opset = scheme.to_dict(), method, model.opset_imports.get("")
    record.engine = "edgec (onnxruntime quantize_static, QDQ)"
    with system.scratch("quant") as tmp:
        logger.info(f"calibrating int8 ranges ({method}, {calibration.count} samples)")
        quantizer = Quantizer(model, scheme, calibration, method, Path(tmp))
        kinds = output_kinds(model, judge)
        _choose_ranges_and_bias(model, quantizer, record, options, kinds)
        ranges_chosen = quantizer.method, quantizer.correct_bias

        def attempt(measured: QuantizationRecord, chosen_options=options):
            return _quantize_chosen(model, target, scheme, quantizer, backend, calibration, chosen_options, judge,
                                    kinds, measured)

        built = attempt(record)
        if _gave_up(built):
            built = _next_verifying_choice(attempt, quantizer, record, options, built)
        if _gave_up(built):
            quantizer.use(ranges_chosen[0])
            quantizer.correct_bias = ranges_chosen[1]
            built = _next_verifying_scheme(attempt, scheme, record, options, built)
    return built


def _gave_up(built: tuple[ir.Model, QuantizationRecord]) -> bool:
    """Whether the fallback gave up on this build: no set of layers float within the MAC floor verified."""
    return built[1].policy_fallback is not None and not built[1].policy_fallback.passed


def _quantize_chosen(model: ir.Model, target, scheme: Scheme, quantizer: Quantizer, backend,
                     calibration: CalibrationData, options, judge, kinds: list[str], measured: QuantizationRecord
                     ) -> tuple[ir.Model, QuantizationRecord]:
    """The int8 model with the quantizer's calibration method and bias correction, and its record (a copy of
    `measured`, which holds those choices): mixed-range heads float, a candidate of the target's `scheme`
    chosen, then the fallbacks."""
    from edgec.quantize import fallback, islands, ranges, report

    record = dataclasses.replace(measured)
    quantizer.scheme, quantizer.always_float = scheme, ()
    qdq = quantizer.run()
    spans = ranges.calibrated_spans(quantizer.cache)
    macs = fallback.MacShare(model, next(calibration.feeds()))
    record.mixed_range_heads = (ranges.mixed_range_heads(model, spans) + ranges.additive_masks(model, spans)
                                + ranges.log_front_ends(model, spans, macs.int8_share))
    quantizer.always_float = tuple(name for head in record.mixed_range_heads for name in head.float_nodes)
    for head in record.mixed_range_heads:
        logger.info(f"{head.node} mixes ranges {head.ratio:.3g}x apart: " + (
            f"kept it and {len(head.float_nodes) - 1} more node(s) float, each input on its own scale"
            if head.float_nodes else "left int8: keeping its part float would give up the multiply-accumulates int8 pays for"))
    if quantizer.always_float:
        qdq = quantizer.run()
    given = options.int8_scheme
    fitting = _fitting_candidates(quantizer, macs, given)
    if not fitting:
        _refuse_under_floor(quantizer, macs, target.name)
    engines = backend.own_int8(model, target, calibration, options, fitting) if given == AUTO_SCHEME else []
    if scheme.candidates or engines:
        qdq, record.scheme_choice, engine_fallback = _choose_scheme(
            model, quantizer, backend, engines, given, calibration, qdq, fitting, kinds, judge, macs,
            options.strict_precision)
        if record.scheme_choice.chosen in {engine.name for engine in engines}:
            record.engine, record.scheme, record.method = f"{record.scheme_choice.chosen} (see backend)", None, None
            if engine_fallback is not None:
                record.policy_fallback = engine_fallback
                record.int8_mac_share = round(engine_fallback.int8_mac_share, 4)
            return model, record
        record.scheme = quantizer.scheme.to_dict()
    budget = options.max_accuracy_drop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the policy judges the graph while the report is made
        # with an accuracy budget, the accuracy fallback below judges instead
        judged = pool.submit(judge.failures, qdq) if judge is not None and budget is None else None
        record.layers = report.layer_errors(model, qdq, calibration)
        failed = judged.result() if judged is not None else {}
    _mark_float(record, quantizer.float_layers)
    record.int8_mac_share = round(macs.int8_share(quantizer.float_layers), 4)
    if failed and options.strict_precision:
        raise _strict_refusal(failed, record.layers)
    if failed:
        qdq, record.policy_fallback = fallback.to_verify(quantizer, record.layers, judge, macs, qdq, failed)
        record.int8_mac_share = round(record.policy_fallback.int8_mac_share, 4)
        _mark_float(record, (*quantizer.float_layers, *record.policy_fallback.float_layers))
    if budget is not None:
        judge = fallback.AccuracyJudge(model, load_eval(options.eval_data, calibration.specs))
        qdq, record.fallback = fallback.run(quantizer, record.layers, judge, budget, qdq)
        _mark_float(record, (*quantizer.float_layers, *record.fallback["float_layers"]))
        record.int8_mac_share = round(macs.int8_share((*quantizer.float_layers, *record.fallback["float_layers"])), 4)
    record.bias_corrected = quantizer.bias_corrected
    if quantizer.scheme.int8_data_movement:
        moved = islands.move_in_int8(qdq)
        logger.info(f"{moved} data-movement node(s) run on int8 tensors with their input's scale")
    kept_float = {*quantizer.always_float, *quantizer.kept_float, *(record.fallback or {}).get("float_layers", []),
                  *(record.policy_fallback.float_layers if record.policy_fallback else [])}
    record.float_islands = islands.float_islands(qdq, model, quantizer.scheme.int8_ops(), kept_float)
    _log_islands(record.float_islands)
    return qdq, record


def _next_verifying_choice(attempt: Callable, quantizer: Quantizer, measured: QuantizationRecord, options,
                           failed: tuple[ir.Model, QuantizationRecord]) -> tuple[ir.Model, QuantizationRecord]:
    """When the fallback gave up, the measured alternatives of the auto choices (calibration method, bias
    correction) in their measured order, each built as its replay would build it, until one verifies; the
    record says which and why. The held-back ranking judges fidelity, not the policy: on openvino-cpu FER's
    most faithful choice (minmax with bias correction) misses the probabilities' 0.05 by one Add's rounding
    whatever stays float, while minmax without correction verifies. `failed` where none verifies."""
    tried = f"{measured.method} with bias correction {'on' if quantizer.correct_bias else 'off'}"
    reasons = []
    for method, bias in _alternatives(measured, options):
        logger.info(f"int8 does not verify: trying {method} with bias correction {bias}")
        quantizer.correct_bias = bias != "off"
        quantizer.use(method)
        record = dataclasses.replace(measured, method=method)
        qdq, record = attempt(record)
        fell_back = record.policy_fallback
        if fell_back is None or fell_back.passed:
            why = (f"; {tried} did not verify ({failed[1].policy_fallback.gave_up}), so the build took the next "
                   f"measured choice that does: {method} with bias correction {bias}")
            record.calibration_choice = _rechosen(record.calibration_choice, "calibration_method", method, why)
            record.bias_choice = _rechosen(record.bias_choice, "bias_correction", bias, why)
            return qdq, record
        reasons.append(f"{method} with bias correction {bias}: {fell_back.gave_up}")
    if reasons:
        failed[1].policy_fallback.gave_up += "; nor do the other measured choices: " + "; ".join(reasons)
    return failed


def _next_verifying_scheme(attempt: Callable, scheme: Scheme, measured_ranges: QuantizationRecord, options,
                           failed: tuple[ir.Model, QuantizationRecord]) -> tuple[ir.Model, QuantizationRecord]:
    """When neither the fallback nor the other calibration methods and bias corrections verify the scheme
    candidate measured most faithful, the target's other candidates in their measured order, each with the
    measured method and bias correction (`measured_ranges`), until one verifies; the record says which and
    why. The plain graphs' fidelity ranks the schemes, but the fallback repairs some better than others: on
    the PP-OCR text detector onnxruntime's 7-bit weights measured most faithful and verified with no layers
    float within the MAC floor, while 8-bit weights verified with its 32 layers nearest the input float
    (mask IoU 0.92). `failed` where none verifies."""
    measured = failed[1].scheme_choice
    if options.int8_scheme != AUTO_SCHEME or measured is None or not measured.candidates:
        return failed
    reasons = []
    for name in _ranked(measured, tuple(scheme.candidates))[1:]:
        if name not in {c.name for c in measured.candidates}:
            continue  # not measured: it leaves too many MACs float, or the backend cannot run it here
        logger.info(f"int8 does not verify: trying scheme {name}")
        qdq, record = attempt(measured_ranges, dataclasses.replace(options, int8_scheme=name))
        fell_back = record.policy_fallback
        if fell_back is None or fell_back.passed:
            why = (f"; {measured.chosen} did not verify ({failed[1].policy_fallback.gave_up}), so the build took "
                   f"the next measured scheme that does: {name}")
            record.scheme_choice = dataclasses.replace(record.scheme_choice, why=measured.why + why,
                                                       candidates=measured.candidates)
            return qdq, record
        reasons.append(f"scheme {name}: {fell_back.gave_up}")
    if reasons:
        failed[1].policy_fallback.gave_up += "; nor do the other measured schemes: " + "; ".join(reasons)
    return failed


def _alternatives(measured: QuantizationRecord, options) -> list[tuple[str, str]]:
    """(calibration method, bias correction) pairs besides the chosen one: each auto choice's values, the
    chosen first and then the others most faithful first; a given one as given."""
    from edgec.quantize.calibrate import METHODS

    methods = (_ranked(measured.calibration_choice, METHODS) if options.calibration_method == AUTO_METHOD
               else [measured.method])
    biases = (_ranked(measured.bias_choice, ("on", "off")) if options.bias_correction == AUTO_BIAS
              else [options.bias_correction])
    return [(method, bias) for method in methods for bias in biases][1:]


def _ranked(choice: SchemeChoice, values: tuple[str, ...]) -> list[str]:
    """The chosen value, then the others by measured top-1 agreement and SQNR (in `values`' order where none
    was measured)."""
    fidelity = {c.name: (c.top1_agreement or 0.0, c.sqnr_db) for c in choice.candidates}
    others = sorted((v for v in values if v != choice.chosen), key=lambda v: fidelity.get(v, (0.0, 0.0)), reverse=True)
    return [choice.chosen, *others]


def _rechosen(choice: SchemeChoice | None, option: str, value: str, why: str) -> SchemeChoice | None:
    """A measured choice's record once the build took `value` instead: the value, its replay, and why."""
    if choice is None:
        return None
    return _measured_choice(option, value, choice.why + why, choice.candidates)


def _log_islands(found: list) -> None:
    if not found:
        return
    largest = sorted(found, key=lambda i: -i.elements)[:5]
    logger.info(f"{len(found)} float island(s) between int8 tensors, {sum(i.elements for i in found):,} elements "
                "per inference; largest: " + ", ".join(f"{i.node} ({i.op_type}, {i.elements:,})" for i in largest))


def _mark_float(record: QuantizationRecord, names) -> None:
    kept = set(names)
    for layer in record.layers:
        layer.precision = "float" if layer.name in kept else "int8"
