"""A real, tiny transformer: one encoder layer over the 8 rows of scikit-learn's 8x8 digits (8 tokens of
8 pixels), trained in a few seconds. Used by tests/test_openvino.py; trained when used (not committed).

Its shape is the point: every multiply-accumulate is in a MatMul or Gemm (token embedding, query, key,
value and output projections, the MLP, the classifier), and the padding is masked as BERT exporters
mask it: a second input of ones and zeros, turned into float32's lowest value added to the attention
scores. One int8 scale over scores and mask leaves no levels for the scores, which is how a
transformer's int8 fails (the corpus MiniLM's).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, EPOCHS = 32, 12


def train_attention(folder: Path) -> dict:
    """Train (deterministically, 1 thread), export to ONNX, and write eval.npz (labelled) and calib.npz; the
    last 0-2 rows of every image are padding (zeroed and masked)."""
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    digits = load_digits()
    rng = np.random.default_rng(0)
    x = digits.images.astype(np.float32) / 16.0
    mask = np.ones((len(x), 8), np.int64)
    for row, padded in enumerate(rng.integers(0, 3, len(x))):
        mask[row, 8 - padded:] = 0
        x[row, 8 - padded:] = 0.0
    y = digits.target.astype(np.int64)
    order = rng.permutation(len(y))
    train, test = order[:1347], order[1347:]

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.positions = nn.Linear(8, WIDTH), nn.Parameter(torch.zeros(8, WIDTH))
            self.norm1, self.norm2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
            self.query, self.key, self.value, self.out = (nn.Linear(WIDTH, WIDTH) for _ in range(4))
            self.mlp = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))
            self.classifier = nn.Linear(WIDTH, 10)

        def forward(self, rows, attention_mask):
            h = self.embed(rows) + self.positions
            keep = attention_mask.to(torch.float32)
            scores = self.query(h) @ self.key(h).transpose(1, 2) / WIDTH ** 0.5
            scores = scores + (1.0 - keep[:, None, :]) * torch.finfo(torch.float32).min
            h = self.norm1(h + self.out(torch.softmax(scores, -1) @ self.value(h)))
            h = self.norm2(h + self.mlp(h))
            pooled = (h * keep[:, :, None]).sum(1) / keep.sum(1, keepdim=True)
            return self.classifier(pooled)

    model = Encoder().train()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    rows, masks, labels = torch.tensor(x[train]), torch.tensor(mask[train]), torch.tensor(y[train])
    for _ in range(EPOCHS):
        for start in range(0, len(train), 32):
            batch = slice(start, start + 32)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(rows[batch], masks[batch]), labels[batch]).backward()
            optimizer.step()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model": folder / "attention.onnx", "eval": folder / "eval.npz", "calibration": folder / "calib.npz"}
    torch.onnx.export(model.eval(), (rows[:1], masks[:1]), paths["model"], input_names=["rows", "attention_mask"],
                      output_names=["logits"], dynamic_axes={"rows": {0: "batch"}, "attention_mask": {0: "batch"},
                                                             "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    np.savez(paths["eval"], rows=x[test], attention_mask=mask[test], labels=y[test])
    np.savez(paths["calibration"], rows=x[train[:64]], attention_mask=mask[train[:64]])
    with torch.no_grad():
        paths["accuracy"] = float((model(torch.tensor(x[test]), torch.tensor(mask[test])).argmax(1).numpy()
                                   == y[test]).mean())
    return paths
