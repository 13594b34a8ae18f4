"""Calibration and evaluation data: read, preprocess and check it against the model's inputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx_ir as ir

from edgec.errors import InputError

RANDOM = "random"
RANDOM_SAMPLES = 32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class CalibrationData:
    """Arrays keyed by input name, stacked along axis 0 (one row per sample)."""

    arrays: dict[str, np.ndarray]
    source: str
    random: bool = False
    labels: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(next(iter(self.arrays.values())))

    def rows(self, batch: int = 1):
        """Feeds of `batch` samples each, in order."""
        for start in range(0, self.count - batch + 1, batch):
            yield {name: value[start : start + batch] for name, value in self.arrays.items()}

    def describe(self) -> dict:
        return {"source": self.source, "samples": self.count, "random": self.random,
                "inputs": {k: list(v.shape[1:]) for k, v in self.arrays.items()}}


@dataclass(frozen=True)
class ImagePreprocess:
    """How a folder of images becomes model inputs: `size=224,mean=0.485/0.456/0.406,std=...,order=rgb,layout=nchw`."""

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: float = 255.0
    order: str = "rgb"
    layout: str = "nchw"

    @classmethod
    def parse(cls, text: str | None) -> "ImagePreprocess":
        if not text:
            return cls()
        values = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            try:
                if key == "size":
                    dims = [int(v) for v in value.replace("x", "/").split("/")]
                    values["size"] = (dims[0], dims[-1])
                elif key in ("mean", "std"):
                    values[key] = tuple(float(v) for v in value.split("/"))
                elif key == "scale":
                    values["scale"] = float(value)
                elif key in ("order", "layout"):
                    values[key] = value.strip().lower()
                else:
                    raise ValueError(key)
            except ValueError:
                raise InputError(
                    f"malformed --preprocess '{text}': write e.g. size=224,mean=0.485/0.456/0.406,"
                    "std=0.229/0.224/0.225,scale=255,order=rgb,layout=nchw"
                ) from None
        return cls(**values)


def _input_specs(model: ir.Model) -> dict[str, ir.Value]:
    initializers = set(model.graph.initializers)
    return {v.name: v for v in model.graph.inputs if v.name not in initializers}


def _expected_shape(value: ir.Value) -> list:
    return [d if isinstance(d, int) else "N" for d in value.shape] if value.shape is not None else []


def load_arrays(path: str, model: ir.Model, what: str = "calibration") -> tuple[dict, np.ndarray | None]:
    """Read .npz (keyed by input name, optional 'labels') or .npy (single input)."""
    file = Path(path)
    inputs = _input_specs(model)
    if not file.exists():
        raise InputError(f"{what} data not found: {file}")
    try:
        if file.suffix == ".npy":
            if len(inputs) != 1:
                raise InputError(f"{file} is one array but the model has inputs {list(inputs)}: use an .npz keyed by input name")
            return {next(iter(inputs)): np.load(file, allow_pickle=False)}, None
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {what} data {file}: {exc}") from exc
    labels = arrays.pop("labels", None)
    if len(inputs) == 1 and len(arrays) == 1 and next(iter(arrays)) not in inputs:
        arrays = {next(iter(inputs)): next(iter(arrays.values()))}
    return arrays, labels


def check_arrays(arrays: dict, model: ir.Model, source: str) -> dict[str, np.ndarray]:
    """Every input present, per-sample shape and dtype kind as the model expects; float32 out."""
    inputs = _input_specs(model)
    missing = [n for n in inputs if n not in arrays]
    if missing:
        raise InputError(f"{source} has no array for input(s) {missing}; its arrays are {sorted(arrays)} "
                         f"(key each array by the model's input name)")
    checked = {}
    counts = set()
    for name, value in inputs.items():
        array = np.asarray(arrays[name])
        expected = _expected_shape(value)
        per_sample = expected[1:]
        ok = array.ndim == len(expected) and all(
            e == "N" or e == a for e, a in zip(per_sample, array.shape[1:])
        )
        if not ok:
            raise InputError(
                f"{source}: input '{name}' has shape {list(array.shape)}, expected [{', '.join(map(str, expected))}] "
                f"(samples stacked along axis 0)"
            )
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise InputError(f"{source}: input '{name}' has dtype {array.dtype}, expected a numeric array")
        checked[name] = array.astype(value.dtype.numpy() if value.dtype else np.float32, copy=False)
        counts.add(len(array))
    if len(counts) > 1:
        raise InputError(f"{source}: inputs have different sample counts {sorted(counts)}")
    return checked


def load_images(folder: Path, model: ir.Model, spec: ImagePreprocess) -> dict[str, np.ndarray]:
    """A folder of images -> one float32 input, resized and normalized as `spec` says."""
    from PIL import Image

    inputs = _input_specs(model)
    if len(inputs) != 1:
        raise InputError(f"an image folder feeds one input, but the model has {list(inputs)}: use an .npz")
    name, value = next(iter(inputs.items()))
    shape = _expected_shape(value)
    layout = spec.layout
    size = spec.size or (tuple(shape[2:4]) if layout == "nchw" else tuple(shape[1:3]))
    if any(not isinstance(d, int) for d in size):
        raise InputError("the image size is unknown: pass --preprocess size=H/W")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    batch = []
    for file in files:
        image = Image.open(file).convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / spec.scale
        if spec.order == "bgr":
            pixels = pixels[..., ::-1]
        pixels = (pixels - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
        batch.append(pixels.transpose(2, 0, 1) if layout == "nchw" else pixels)
    return {name: np.stack(batch).astype(np.float32)}


def random_arrays(model: ir.Model, count: int = RANDOM_SAMPLES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for name, value in _input_specs(model).items():
        shape = [count, *[d if isinstance(d, int) else 1 for d in value.shape[1:]]]
        arrays[name] = rng.standard_normal(shape).astype(np.float32)
    return arrays


def load_calibration(path: str, model: ir.Model, target=None, options: dict | None = None) -> CalibrationData:
    """Read --calibration: an .npz/.npy, an image folder (with --preprocess), or the word 'random'."""
    options = options or {}
    if path == RANDOM:
        return CalibrationData(random_arrays(model), RANDOM, random=True)
    folder = Path(path)
    if folder.is_dir():
        spec_text = options.get("preprocess") or (target.options.get("preprocess") if target else None)
        arrays = load_images(folder, model, ImagePreprocess.parse(spec_text))
        return CalibrationData(check_arrays(arrays, model, str(folder)), str(folder),
                               extra={"preprocess": spec_text})
    arrays, labels = load_arrays(path, model)
    return CalibrationData(check_arrays(arrays, model, str(path)), str(path), labels=labels)


def load_eval(path: str, model: ir.Model) -> CalibrationData:
    """Read --eval: inputs keyed by input name and, optionally, integer 'labels'."""
    arrays, labels = load_arrays(path, model, "evaluation")
    checked = check_arrays(arrays, model, str(path))
    if labels is not None and len(labels) != len(next(iter(checked.values()))):
        raise InputError(f"{path}: 'labels' has {len(labels)} rows but the inputs have {len(next(iter(checked.values())))}")
    return CalibrationData(checked, str(path), labels=labels)
