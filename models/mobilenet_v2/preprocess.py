"""ImageNet preprocessing for the MobileNetV2 fixture, and the bundled photos.

The pipeline is torchvision's classic one, done with scikit-image:
    1. resize so the shorter side is 256 (skimage.transform.resize, anti_aliasing=True, order 1)
    2. center crop 224x224
    3. round to uint8  (so the stored crops in photos.npz reproduce the inputs exactly)
    4. /255, subtract mean (0.485, 0.456, 0.406), divide by std (0.229, 0.224, 0.225)
    5. HWC -> CHW, float32
`preprocess(img)` does all of it; `crop(img)` does 1-3 and `normalize(crop)` does 4-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE = 256
CROP = 224

# name -> loader of an RGB uint8 HWC photo; every one ships inside scikit-image or scikit-learn
PHOTO_NAMES = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "china", "flower"]


def crop(image_hwc_uint8: np.ndarray) -> np.ndarray:
    """Resize the shorter side to 256, center crop 224x224; returns uint8 [224, 224, 3]."""
    from skimage.transform import resize

    img = np.asarray(image_hwc_uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {img.shape}")
    h, w = img.shape[:2]
    scale = RESIZE / min(h, w)
    nh, nw = max(RESIZE, round(h * scale)), max(RESIZE, round(w * scale))
    resized = resize(img, (nh, nw), order=1, anti_aliasing=True, preserve_range=True)
    top, left = (nh - CROP) // 2, (nw - CROP) // 2
    out = resized[top : top + CROP, left : left + CROP]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def normalize(crop_hwc_uint8: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W], ImageNet mean/std normalized."""
    x = (np.asarray(crop_hwc_uint8, dtype=np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(np.moveaxis(x, -1, -3), dtype=np.float32)


def preprocess(image_hwc_uint8: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] photo -> float32 [3, 224, 224] network input."""
    return normalize(crop(image_hwc_uint8))


def load_raw_photos() -> dict[str, np.ndarray]:
    """The original photos (RGB uint8 HWC) from scikit-image and scikit-learn, offline."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(skimage.data, name)() for name in ["astronaut", "chelsea", "coffee", "rocket"]}
    photos["motorcycle_left"] = skimage.data.stereo_motorcycle()[0]
    sample = load_sample_images()
    for path, img in zip(sample.filenames, sample.images):
        photos[Path(path).stem] = img  # china, flower
    return {name: photos[name] for name in PHOTO_NAMES}


def load_photos(path: str | Path = HERE / "photos.npz") -> tuple[np.ndarray, list[str], np.ndarray]:
    """The committed photos: (x float32 [N,3,224,224], names, torch fp32 logits [N,1000])."""
    with np.load(path) as data:
        return normalize(data["photos_uint8"]), [str(n) for n in data["names"]], data["logits"]


def load_class_names(path: str | Path = HERE / "imagenet_classes.txt") -> list[str]:
    return Path(path).read_text().splitlines()
