"""Check the model fixtures numerically in onnxruntime against the recorded PyTorch results.

    digits:       ONNX test accuracy on split.npz must equal metrics.json's PyTorch accuracy
    mobilenet_v2: ONNX logits on photos.npz must match the stored PyTorch fp32 logits
                  (max abs error <= 1e-4) and give the same top-1 as predictions.json
Usage: python models/check.py   (mobilenet_v2 is skipped when its .onnx has not been made)
Exit code 0 when every check passes.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "mobilenet_v2"))


def session(path: Path, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ops(path: Path) -> str:
    counts = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def check_digits() -> bool:
    d = HERE / "digits"
    split = np.load(d / "split.npz")
    torch_acc = json.loads((d / "metrics.json").read_text())["test_accuracy"]
    logits = session(d / "digits_cnn.onnx").run(["logits"], {"input": split["x_test"]})[0]
    acc = float((logits.argmax(1) == split["y_test"]).mean())
    ok = acc == torch_acc
    print(f"digits: ops [{ops(d / 'digits_cnn.onnx')}]")
    print(f"digits: onnxruntime test accuracy {acc:.4f} vs PyTorch {torch_acc:.4f}: {'OK' if ok else 'MISMATCH'}")
    return ok


def check_mobilenet() -> bool:
    from preprocess import load_photos

    d = HERE / "mobilenet_v2"
    path = d / "mobilenet_v2.onnx"
    if not path.exists():
        print("mobilenet_v2: mobilenet_v2.onnx missing (run fetch.py and export.py), skipped")
        return True
    x, names, torch_logits = load_photos(d / "photos.npz")
    preds = json.loads((d / "predictions.json").read_text())["photos"]
    print(f"mobilenet_v2: ops [{ops(path)}]")
    ok = True
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        logits = session(path, level).run(["logits"], {"input": x})[0]
        err = float(np.abs(logits - torch_logits).max())
        top1_same = all(int(logits[i].argmax()) == p["top5"][0] for i, p in enumerate(preds))
        good = err <= 1e-4 and top1_same
        ok &= good
        print(f"mobilenet_v2: onnxruntime ({level.name}) vs PyTorch on {len(names)} photos: "
              f"max abs error {err:.2e}, top-1 {'same' if top1_same else 'DIFFERENT'}: {'OK' if good else 'FAIL'}")
    return ok


if __name__ == "__main__":
    results = [check_digits(), check_mobilenet()]
    sys.exit(0 if all(results) else 1)
