"""A built artifact's figures on a device, measured through its own harness: size, latency
percentiles, throughput, peak memory, and accuracy on the user's evaluation data."""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import Optional
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class Figures:
    """What one candidate measured. Latencies from an emulated device prove only that it runs."""

    size_bytes: int
    p50_ms: float
    p90_ms: float
    throughput_per_s: float
    peak_rss_mb: Optional[float]
    accuracy: Optional[float]  # percent: top-1 vs labels, or top-1 agreement with the source model
    build_s: float
    emulated: bool = False


@dataclass
class Evaluation:
    """The evaluation data, checked against the source model, and what the predictions are judged against."""

    source: str
    inputs: dict  # arrays keyed by input name (labels removed): what run.py infer reads
    reference: np.ndarray  # the top-1 class each sample should get
    measure: str  # "accuracy vs labels" or "top-1 agreement with the source model"
    baseline: float  # the source model's own figure, in percent: the accuracy drop is measured from it

    @classmethod
    def load(cls, path: str, source: str, input_shapes: tuple[str, ...] = (), weights: str | None = None,
             trust_code: bool = False):
        """Read --eval for `source`; data of the wrong names or shapes is refused (exit 2)."""
        from edgec import frontends, ir as eir
        from edgec.package import samples as sampling
        from edgec.quantize.data import load_arrays, load_eval
        from edgec.quantize.fallback import predictions

        model = frontends.load(source, [eir.InputSpec.parse(s) for s in input_shapes], weights, trust_code)
        specs, _ = sampling.model_interface(model)
        data = load_eval(path, specs)
        arrays, labels = load_arrays(path, specs, "evaluation")  # as given: what run.py infer reads
        source_top1 = predictions(model, data)
        if labels is not None:
            baseline = float(100.0 * np.mean(source_top1 == labels[: len(source_top1)]))
            return cls(str(path), arrays, np.asarray(labels), "accuracy vs labels", baseline)
        return cls(str(path), arrays, source_top1, "top-1 agreement with the source model", 100.0)

    def accuracy(self, artifact: Path, device: str | None) -> float:
        """Top-1 of the artifact's first output on every evaluation sample, in percent, run on `device`."""
        from edgec.api import run_harness
        from edgec.package.harness import interface
        from edgec.runners import HarnessCall

        with tempfile.TemporaryDirectory(prefix="edgec-eval-") as scratch:
            feed, out = Path(scratch) / "inputs.npz", Path(scratch) / "outputs.npz"
            np.savez(feed, **self.inputs)
            _, manifest = run_harness(artifact, HarnessCall("infer", inputs={"--inputs": feed},
                                                            outputs={"--outputs": out}), device)
            logits = interface.load(out)[manifest.outputs[0].name]
        predicted = np.asarray(logits).reshape(-1, np.shape(logits)[-1]).argmax(1)
        return float(100.0 * np.mean(predicted == self.reference[: len(predicted)]))


def measure(built: list, device: str | None, evaluation: Evaluation | None, iters: int = 100,
            rounds: int = 3) -> list[Figures]:
    """Figures of each built `api.Artifact`, benched in interleaved rounds on `device` with its own harness.

    Each round benches every artifact once; an artifact's latency is from its round with the lowest
    p50, the one least disturbed by other load on the machine, so a candidate is not judged by a
    moment when another process ran.
    """
    from edgec import api

    best: list[dict | None] = [None] * len(built)
    for _ in range(rounds):
        for i, artifact in enumerate(built):
            bench = api.bench(artifact.path, device, warmup=max(1, iters // 10), iters=iters)
            if best[i] is None or bench["p50_ms"] < best[i]["p50_ms"]:
                best[i] = bench
    figures = []
    for artifact, bench in zip(built, best):
        accuracy = evaluation.accuracy(artifact.path, device) if evaluation else None
        manifest = artifact.manifest
        figures.append(Figures(manifest.model.bytes, bench["p50_ms"], bench["p90_ms"], bench["throughput_per_s"],
                               bench.get("peak_rss_mb"), accuracy, manifest.build.seconds or 0.0,
                               bool(bench["emulated"])))
    return figures
