"""Export the ImageNet MobileNetV2 to ONNX and record its fp32 predictions on real photos.

Needs mobilenet_v2-b0353104.pth (run fetch.py first). Writes, beside this file:
    mobilenet_v2.onnx   (not committed, ~14 MB) opset 17, legacy exporter, un-optimized
                        (BatchNormalization nodes kept), input "input" [batch,3,224,224] float32,
                        output "logits" [batch,1000]
    photos.npz          (committed) photos_uint8 [N,224,224,3] (resized + center-cropped RGB),
                        names [N], logits [N,1000] float32 (PyTorch fp32 on normalize(photos_uint8))
    predictions.json    (committed) PyTorch fp32 top-5 indices and names, top-1 logit per photo
Each output is made only when missing; --force remakes all of them.
Usage: python models/mobilenet_v2/export.py [--force]
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WEIGHTS = HERE / "mobilenet_v2-b0353104.pth"
ONNX_PATH = HERE / "mobilenet_v2.onnx"
PHOTOS_PATH = HERE / "photos.npz"
PREDICTIONS_PATH = HERE / "predictions.json"


def load_model():
    import torch

    from model import MobileNetV2

    if not WEIGHTS.exists():
        sys.exit(f"export.py: {os.path.relpath(WEIGHTS)} is missing: run python models/mobilenet_v2/fetch.py first")
    model = MobileNetV2()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def export_onnx(model, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript-based exporter"
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 224, 224),),
            str(path),
            dynamo=False,
            opset_version=17,
            do_constant_folding=False,  # keep BatchNormalization for edgec's own folding pass
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


def make_photos(model, path: Path) -> None:
    import numpy as np
    import torch

    from preprocess import PHOTO_NAMES, crop, load_raw_photos, normalize

    raw = load_raw_photos()
    crops = np.stack([crop(raw[name]) for name in PHOTO_NAMES])
    torch.set_num_threads(1)  # same numbers on every machine
    with torch.no_grad():
        logits = model(torch.from_numpy(normalize(crops))).numpy().astype(np.float32)
    np.savez_compressed(path, photos_uint8=crops, names=np.array(PHOTO_NAMES), logits=logits)


def make_predictions(path: Path) -> None:
    import numpy as np

    from preprocess import load_class_names, load_photos

    _, names, logits = load_photos(PHOTOS_PATH)
    classes = load_class_names()
    photos = []
    for name, row in zip(names, logits):
        top5 = np.argsort(-row, kind="stable")[:5]
        e = np.exp(row - row.max())
        prob = e / e.sum()
        photos.append(
            {
                "name": name,
                "top5": [int(i) for i in top5],
                "top5_names": [classes[i] for i in top5],
                "top5_prob": [round(float(prob[i]), 4) for i in top5],
                "top1_logit": float(row[top5[0]]),
            }
        )
    doc = {
        "model": "torchvision mobilenet_v2 ImageNet weights mobilenet_v2-b0353104.pth, hand-written model.py",
        "runtime": "PyTorch fp32, 1 thread",
        "preprocessing": "preprocess.py: shorter side 256 (skimage resize, anti_aliasing), center crop 224, "
        "round to uint8, /255, mean (0.485,0.456,0.406), std (0.229,0.224,0.225), NCHW",
        "photos": photos,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def main() -> None:
    force = "--force" in sys.argv[1:]
    todo = [p for p in (ONNX_PATH, PHOTOS_PATH, PREDICTIONS_PATH) if force or not p.exists()]
    if not todo:
        print(f"mobilenet_v2: {ONNX_PATH.name}, {PHOTOS_PATH.name}, {PREDICTIONS_PATH.name} already present, nothing to do")
        return
    model = load_model() if ONNX_PATH in todo or PHOTOS_PATH in todo else None
    if ONNX_PATH in todo:
        export_onnx(model, ONNX_PATH)
    if PHOTOS_PATH in todo:
        make_photos(model, PHOTOS_PATH)
    if PREDICTIONS_PATH in todo or PHOTOS_PATH in todo:
        make_predictions(PREDICTIONS_PATH)
    made = sorted({p.name for p in todo} | ({PREDICTIONS_PATH.name} if PHOTOS_PATH in todo else set()))
    print(f"mobilenet_v2: wrote {', '.join(made)} to {os.path.relpath(HERE)}")


if __name__ == "__main__":
    main()
