"""Train the digits CNN on scikit-learn's load_digits and write the committed fixtures.

Usage:  python models/digits/train.py            (about 10 s on 2 cores)

Preprocessing (the same everywhere these fixtures are used):
    x = load_digits().images.astype(float32) / 16.0     -> [N, 8, 8] in [0, 1]
    x = x[:, None, :, :]                                 -> NCHW [N, 1, 8, 8]

Writes, beside this file:
    digits_cnn.pth    state_dict of model.DigitsCNN
    digits_cnn.onnx   opset 17, legacy exporter, un-optimized (BatchNormalization nodes kept),
                      input "input" [batch,1,8,8] float32, output "logits" [batch,10]
    split.npz         x_test [450,1,8,8] f32, y_test [450] i64, test_indices [450] i64,
                      x_calib [200,1,8,8] f32 (drawn from the train part), calib_indices [200] i64
    metrics.json      PyTorch test accuracy and how it was made
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402

from model import DigitsCNN  # noqa: E402

SEED = 0
N_TEST = 450
N_CALIB = 200
EPOCHS = 60
BATCH = 32
LR = 1e-2
LABEL_SMOOTHING = 0.1
SHIFT = 1  # augmentation: random shift of the whole batch by up to 1 pixel (zero padded)
PREPROCESSING = (
    "sklearn.datasets.load_digits().images as float32 divided by 16.0 (range 0..1), "
    "shaped NCHW [N,1,8,8]; no mean/std normalization"
)


def load_data():
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=N_TEST, random_state=SEED, stratify=y)
    return x, y, np.sort(train_idx), np.sort(test_idx)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, 1, 8, 8)
    # do_constant_folding=False keeps the BatchNormalization nodes (with it, the legacy
    # exporter folds BN into Conv), so edgec's own BN-folding pass has work to do.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript-based exporter"
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=17,
            do_constant_folding=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


def main() -> None:
    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # same numbers on every machine

    x, y, train_idx, test_idx = load_data()
    x_train, y_train = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])

    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    steps_per_epoch = (len(train_idx) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=EPOCHS * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    gen = torch.Generator().manual_seed(SEED)
    for _epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(train_idx), generator=gen)
        for i in range(0, len(perm), BATCH):
            b = perm[i : i + BATCH]
            xb = x_train[b]
            if SHIFT:
                dx, dy = torch.randint(0, 2 * SHIFT + 1, (2,), generator=gen).tolist()
                xb = nn.functional.pad(xb, (SHIFT,) * 4)[:, :, dy : dy + 8, dx : dx + 8]
            opt.zero_grad()
            loss = loss_fn(model(xb), y_train[b])
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.perf_counter() - t0

    model.eval()
    acc = evaluate(model, x[test_idx], y[test_idx])
    train_acc = evaluate(model, x[train_idx], y[train_idx])

    rng = np.random.RandomState(SEED)
    calib_idx = np.sort(rng.choice(train_idx, size=N_CALIB, replace=False))

    torch.save(model.state_dict(), HERE / "digits_cnn.pth")
    export_onnx(model, HERE / "digits_cnn.onnx")
    np.savez_compressed(
        HERE / "split.npz",
        x_test=x[test_idx],
        y_test=y[test_idx],
        test_indices=test_idx.astype(np.int64),
        x_calib=x[calib_idx],
        calib_indices=calib_idx.astype(np.int64),
    )
    # the same arrays keyed by the ONNX input name, ready for edgec's --calibration and --eval
    np.savez_compressed(HERE / "calibration.npz", input=x[calib_idx])
    np.savez_compressed(HERE / "test.npz", input=x[test_idx], labels=y[test_idx])
    metrics = {
        "test_accuracy": acc,
        "train_accuracy": train_acc,
        "n_test": int(len(test_idx)),
        "n_train": int(len(train_idx)),
        "n_calib": N_CALIB,
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "preprocessing": PREPROCESSING,
        "split": f"train_test_split(test_size={N_TEST}, random_state={SEED}, stratify=y)",
        "training": f"AdamW lr={LR} wd=1e-4 OneCycle, {EPOCHS} epochs, batch {BATCH}, "
        f"label smoothing {LABEL_SMOOTHING}, random shift +-{SHIFT} px per batch, 1 thread, "
        "torch.use_deterministic_algorithms(True)",
        "seed": SEED,
        "torch_version": torch.__version__,
    }
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(
        f"digits: trained {metrics['n_params']} params in {train_s:.1f} s, "
        f"test accuracy {acc:.4f} ({round(acc * len(test_idx))}/{len(test_idx)}), "
        f"wrote {', '.join(p for p in ['digits_cnn.pth', 'digits_cnn.onnx', 'split.npz', 'calibration.npz', 'test.npz', 'metrics.json'])} "
        f"to {os.path.relpath(HERE)}"
    )


if __name__ == "__main__":
    main()
