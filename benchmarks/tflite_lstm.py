"""LSTM on tflite-arm: the unrolled graph edgec writes by default against LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM.

The model is Resemblyzer's speaker encoder from the corpus (3-layer LSTM 40 -> 256 and a projection,
real weights), run on real mel frames at two sequence lengths: 160 frames (the partial utterance
Resemblyzer embeds) and 40. In one run, for each length: tflite-arm fp32 unrolled (every step is
FULLY_CONNECTED/ADD/LOGISTIC/TANH/MUL in XNNPACK), tflite-arm fp32 with the LSTM kernel
(`options={"recurrent": "kernel"}`), int8 (the dynamic-range candidate, the one that keeps the LSTM int8:
int8 weights with a scale per row, each input quantized at run time, which LiteRT runs as hybrid
FULLY_CONNECTED steps: its hybrid sequence kernel takes one scale per weight tensor), and the
onnxruntime target as the peer. Every artifact is built by
edgec, verified, and timed by its own harness (`run.py bench`) with 2 threads, in interleaved rounds;
each number is the median over rounds of the harness's p50.

    python benchmarks/tflite_lstm.py [--rounds 5 --iters 50]

Needs the corpus (`make corpus`). Writes benchmarks/results/tflite_lstm.json and .md.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, harness_run_header, harness_run_record, interleaved_latency, write_results

THREADS = 2
LENGTHS = (160, 40)
VARIANTS = {  # target, precision, options
    "tflite-arm unrolled": ("tflite-arm", "fp32", {"recurrent": "unrolled"}),
    "tflite-arm LSTM kernel": ("tflite-arm", "fp32", {"recurrent": "kernel"}),
    "tflite-arm int8 hybrid steps": ("tflite-arm", "int8", {}),
    "onnxruntime": ("onnxruntime", "fp32", {}),
}


def export_encoder(folder: Path, frames: int) -> tuple[Path, np.ndarray]:
    """Resemblyzer's VoiceEncoder (zero initial state, the last layer's last hidden state projected and
    normalized) with its pretrained weights as ONNX for `frames` mel frames (static shapes, so the exporter
    folds the zero initial states to constants), and the corpus's real mel frames [N, frames, 40]."""
    import sys

    import torch

    sys.path.insert(0, str(ROOT))
    from models.corpus.nets import StreamingVoiceEncoder
    from models.corpus.registry import BY_NAME

    entry = BY_NAME["resemblyzer_stream"]
    state = torch.load(entry.sources[0].path, map_location="cpu", weights_only=False)["model_state"]
    encoder = StreamingVoiceEncoder().eval()
    encoder.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})

    class VoiceEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.linear = encoder.lstm, encoder.linear

        def forward(self, mels):
            _, (hidden, _) = self.lstm(mels)
            embedding = torch.relu(self.linear(hidden[-1]))
            return embedding / torch.norm(embedding, dim=1, keepdim=True)

    path = folder / f"voice_encoder_{frames}.onnx"
    torch.onnx.export(VoiceEncoder().eval(), (torch.zeros(1, frames, 40),), str(path), input_names=["mels"],
                      output_names=["embedding"], opset_version=17, dynamo=False)
    return path, np.ascontiguousarray(entry.load_inputs()["mels"][:, :frames])


def main() -> None:
    from edgec import api

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgec-bench-lstm-") as tmp:
        artifacts, builds = {}, {}
        for length in LENGTHS:
            source, mels = export_encoder(Path(tmp), length)
            samples = Path(tmp) / f"mels_{length}.npz"
            np.savez(samples, mels=mels)
            for variant, (target, precision, options) in VARIANTS.items():
                name = f"{variant}, {length} frames"
                folder = Path(tmp) / name.replace(" ", "_").replace(",", "")
                built = api.build(str(source), target, folder, precision=precision, force=True, options=options,
                                  calibration=str(samples))
                if not built.verified:
                    raise SystemExit(f"{name} did not pass verification")
                artifacts[name] = folder
                manifest = built.manifest
                delegation = manifest.verification.result.runtime_checks.get("xnnpack_delegation")
                builds[name] = {"model_bytes": manifest.model.bytes, "notes": getattr(manifest.backend, "notes", None),
                                "build_seconds": manifest.build.seconds,
                                "operators": sum((getattr(manifest.backend, "operators", None) or {}).values()),
                                "xnnpack": delegation.detail if delegation else None}
        latency = interleaved_latency(artifacts, args.rounds, args.warmup, args.iters, THREADS)
    result = {
        **harness_run_record(args, THREADS),
        "model": "Resemblyzer speaker encoder (resemblyzer==0.1.4 pretrained.pt): LSTM 40->256 x3, Linear 256",
        "latency": latency,
        "builds": builds,
    }
    write_results("tflite_lstm", result, markdown(result))


def markdown(r: dict) -> str:
    lines = [harness_run_header(r), "",
             "| artifact | p50 ms | min ms | load ms | operators | model MB | outside XNNPACK |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, lat in r["latency"].items():
        build = r["builds"][name]
        lines.append(f"| {name} | {lat['p50_ms']:.2f} | {lat['min_ms']:.2f} | {lat['load_time_ms']:.0f} | "
                     f"{build['operators'] or '-'} | {build['model_bytes'] / 1e6:.1f} | {build['xnnpack'] or '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
