"""The measured effect of a compression: the same measures of the original and the compressed model.

Parameters, MACs, file size and compressed (zip) size come from the ONNX files; accuracy from
onnxruntime on --eval (against its labels, or top-1 agreement with the original); latency from
both models built for each --target and timed by the artifacts' own harness on --device, in
alternating rounds so that load on a shared machine affects both alike.
"""
from __future__ import annotations

import io
import statistics
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx_ir as ir

from edgec.ir import runtime, stats
from edgec.quantize.data import load_eval

ROUNDS = 3  # alternating bench rounds per target; the median p50 is reported


@dataclass
class Measures:
    parameters: int
    macs: int
    bytes: int
    zip_bytes: int
    accuracy: float | None = None  # percent
    latency_ms: dict[str, float] = field(default_factory=dict)  # target -> median p50


@dataclass
class Latency:
    targets: tuple[str, ...] = ()
    device: str | None = None
    precision: str = "fp32"
    calibration: str | None = None
    iters: int = 50


@dataclass
class Report:
    source: str
    output: str
    plan: dict
    steps: dict
    original: Measures
    compressed: Measures
    accuracy_measure: str | None = None
    eval_data: str | None = None
    device: str | None = None
    precision: str | None = None
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> dict:
        """original / compressed: above 1 is smaller or faster."""
        ratio = lambda a, b: round(a / b, 3) if b else None  # noqa: E731
        result = {key: ratio(getattr(self.original, key), getattr(self.compressed, key))
                  for key in ("parameters", "macs", "bytes", "zip_bytes")}
        result["speedup"] = {t: ratio(ms, self.compressed.latency_ms.get(t)) for t, ms in self.original.latency_ms.items()}
        if self.original.accuracy is not None:
            result["accuracy_change_points"] = round(self.compressed.accuracy - self.original.accuracy, 3)
        return result

    def to_dict(self) -> dict:
        return asdict(self) | {"ratios": self.ratios()}


def measure(path: Path) -> Measures:
    """Size of one ONNX file (with its external data, if any); parameters and MACs of the graph a build
    lowers, after BatchNorm folding, since the exporters differ in whether they fold it already."""
    from edgec import passes

    model, _ = passes.optimize(ir.load(path))
    files = [path] + ([Path(f"{path}.data")] if Path(f"{path}.data").exists() else [])
    macs, _ = stats.macs_per_sample(model)
    return Measures(stats.parameter_count(model), macs, sum(f.stat().st_size for f in files), zip_size(files))


def zip_size(files: list[Path]) -> int:
    """Bytes of a deflate zip of the files: what sparsity saves when a model is stored or shipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for file in files:
            archive.write(file, file.name)
    return buffer.tell()


def add_accuracy(original: tuple[ir.Model, Measures], compressed: tuple[ir.Model, Measures], eval_path: str) -> str:
    """Fill in accuracy on --eval for both models; returns what was measured."""
    from edgec.package import samples

    specs, outputs_specs = samples.model_interface(original[0])
    data = load_eval(eval_path, specs)
    logits = {}
    for model, _ in (original, compressed):
        outputs = runtime.run_all(runtime.session(model, optimize=True), data.runs, outputs_specs)
        logits[id(model)] = next(iter(outputs.values()))
    reference = data.labels if data.labels is not None else logits[id(original[0])].argmax(-1)
    for model, measures in (original, compressed):
        predicted = logits[id(model)].argmax(-1)
        measures.accuracy = round(float(100 * np.mean(predicted == reference)), 3)
    return "accuracy vs labels (%)" if data.labels is not None else "top-1 agreement with the original (%)"


def add_latency(paths: dict[str, Path], measures: dict[str, Measures], latency: Latency, log) -> None:
    """Build each model for each target and time it with its own harness, alternating between them."""
    from edgec import api

    with tempfile.TemporaryDirectory(prefix="edgec-compress-bench-") as tmp:
        for target in latency.targets:
            artifacts = {}
            for role, path in paths.items():
                artifacts[role] = Path(tmp) / f"{role}-{Path(target).stem}"
                log(f"building the {role} model for {target}")
                api.build(str(path), target, artifacts[role], precision=latency.precision,
                          calibration=latency.calibration)
            runs = {role: [] for role in paths}
            for _ in range(ROUNDS):
                for role, artifact in artifacts.items():
                    runs[role].append(api.bench(artifact, latency.device, iters=latency.iters)["p50_ms"])
            for role in paths:
                measures[role].latency_ms[target] = round(statistics.median(runs[role]), 4)
            log(f"{target}: p50 {measures['original'].latency_ms[target]:.3f} ms -> "
                f"{measures['compressed'].latency_ms[target]:.3f} ms")


def evaluate(outcome, source: str, plan: dict, folder: Path, eval_data: str | None = None,
             latency: Latency | None = None, log=lambda _message: None, name: str = "model.onnx") -> tuple[Path, Report]:
    """Save both models of a pipeline outcome in `folder` (the compressed one as `name`, which its external
    data file, if any, is named after) and measure them; returns the compressed model's path and the report."""
    from edgec import ir as eir

    paths = {"original": folder / "original" / "model.onnx", "compressed": folder / "compressed" / name}
    for role, path in paths.items():
        path.parent.mkdir(parents=True)
        eir.save(getattr(outcome, role), path)
    measures = {role: measure(path) for role, path in paths.items()}
    measured = None
    if eval_data:
        measured = add_accuracy((outcome.original, measures["original"]), (outcome.compressed, measures["compressed"]),
                                eval_data)
    if latency is not None and latency.targets:
        add_latency(paths, measures, latency, log)
    report = Report(source, "", plan, outcome.steps, measures["original"], measures["compressed"], measured, eval_data,
                    latency.device if latency else None, latency.precision if latency else None, outcome.notes)
    return paths["compressed"], report
