"""Calibration set for the MobileNetV2 fixture: 64 seeded random crops of offline photos.

No ImageNet images exist offline, so the crops come from every colour photo that ships
with scikit-image and scikit-learn (random scale 0.3-1.0, random position, random flip),
preprocessed exactly as the network expects. Writes calibration.npz keyed by the input name.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from preprocess import CROP, load_raw_photos, normalize  # noqa: E402

EXTRA = ["hubble_deep_field", "immunohistochemistry", "retina", "coffee", "astronaut"]
COUNT = 64


def photos() -> list[np.ndarray]:
    import skimage.data

    images = list(load_raw_photos().values())
    for name in EXTRA:
        image = getattr(skimage.data, name)()
        if image.ndim == 3 and image.shape[2] == 3:
            images.append(image)
    return images


def random_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from skimage.transform import resize

    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    patch = resize(image[top : top + side, left : left + side], (CROP, CROP), order=1, anti_aliasing=True,
                   preserve_range=True)
    patch = patch[:, ::-1] if rng.random() < 0.5 else patch
    return np.clip(np.rint(patch), 0, 255).astype(np.uint8)


def main(out: Path = HERE / "calibration.npz") -> None:
    if out.exists():
        print(f"{out} exists")
        return
    rng = np.random.default_rng(0)
    images = photos()
    crops = np.stack([random_crop(images[i % len(images)], rng) for i in range(COUNT)])
    np.savez(out, input=normalize(crops))
    print(f"wrote {out}: {COUNT} crops of {len(images)} photos")


if __name__ == "__main__":
    main()
