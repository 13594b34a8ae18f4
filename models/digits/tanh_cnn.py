"""A real, tiny model where int8 can be slower than fp32 (on hosts without VNNI): a 12-layer, 8-channel CNN
with tanh activations, trained on scikit-learn's digits in a few seconds (BatchNorm, folded into the
convolutions by the build, makes it trainable this deep). Used by tests/test_choice.py and benchmarks/choice_digits.py;
trained when used (not committed).

Its shape is the point: onnxruntime has no int8 Tanh, so every tanh is a float island between int8
convolutions (QuantizeLinear, QLinearConv, DequantizeLinear, Tanh: four kernels where fp32 runs
one fused Conv+Tanh), and on 8x8 images the per-kernel overhead is the whole cost. On an AVX2 host without
VNNI the int8 build measured 2.1x slower than fp32 (p50 0.20-0.21 vs 0.092-0.097 ms in three rounds, loaded
2-core machine) and still verifies (0.054 of the output range). On an AVX-512 VNNI host the int8 convolutions
win back the islands' cost: int8 0.082-0.086 ms against fp32 0.090-0.096 ms. 16 layers of 4 channels were as
slow but drifted past the verification limit (0.285 of the range).

With `silu`, each activation is SiLU, which the exporter writes as x * sigmoid(x), and a 2x2 max pool
comes before the classifier: the forms OpenVINO fuses into the convolution before them
(tests/test_openvino.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

LAYERS, CHANNELS, EPOCHS = 12, 8, 10


def train_tanh_cnn(folder: Path, layers: int = LAYERS, channels: int = CHANNELS, silu: bool = False
                   ) -> dict[str, Path]:
    """Train (deterministically, 1 thread), export to ONNX, and write eval.npz (labelled) and calibration.npz."""
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1347], order[1347:]

    class TanhCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Sequential(nn.Conv2d(1 if i == 0 else channels, channels, 3, padding=1),
                                                     nn.BatchNorm2d(channels))  # trainable this deep; folds away
                                       for i in range(layers))
            self.pool = nn.MaxPool2d(2) if silu else nn.Identity()
            self.fc = nn.Linear(channels * (16 if silu else 64), 10)

        def forward(self, inputs):
            for conv in self.convs:
                inputs = nn.functional.silu(conv(inputs)) if silu else torch.tanh(conv(inputs))
            return self.fc(self.pool(inputs).flatten(1))

    model = TanhCNN().train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    images, labels = torch.tensor(x[train]), torch.tensor(y[train])
    for _ in range(EPOCHS):
        for start in range(0, len(train), 64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[start:start + 64]), labels[start:start + 64]).backward()
            optimizer.step()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model": folder / "tanh_cnn.onnx", "eval": folder / "eval.npz", "calibration": folder / "calib.npz"}
    torch.onnx.export(model.eval(), (images[:1],), paths["model"], input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    np.savez(paths["eval"], input=x[test], labels=y[test])
    np.savez(paths["calibration"], input=x[train[:200]])
    with torch.no_grad():
        paths["accuracy"] = float((model(torch.tensor(x[test])).argmax(1).numpy() == y[test]).mean())
    return paths
