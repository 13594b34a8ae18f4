"""Calibration and evaluation data: read, preprocess and check it against the model's inputs.

The arrays may come in any form the artifact's harness takes (interface.py): runs stacked
along a new first axis, samples concatenated along the batch axis, or one run.
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx_ir as ir

from edgec.errors import InputError
from edgec.package.harness import interface
from edgec.package.harness.errors import HarnessError, first_line
from edgec.package.harness.interface import Runs
from edgec.package.harness.manifest import TensorSpec
from edgec.package.samples import split

RANDOM = "random"
RANDOM_SAMPLES = 32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class CalibrationData:
    """Samples for calibration or evaluation, as the runs the model takes: one sample per run where
    the batch is dynamic, the model's batch size where it is static (interface.split)."""

    runs: Runs
    specs: list[TensorSpec]  # the model's inputs, with their batch axes
    source: str
    random: bool = False
    labels: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.runs)

    def feeds(self):
        return iter(self.runs)

    def first(self, count: int | None) -> "CalibrationData":
        """The first `count` runs (all when None): --calibration-samples."""
        if count is None or count >= self.count:
            return self
        return dataclasses.replace(self, runs=Runs(self.runs.form, self.runs.feeds[:count]), labels=None)

    def describe(self) -> dict:
        first = self.runs.feeds[0] if self.runs.feeds else {}
        return {"source": self.source, "samples": self.count, "random": self.random,
                "inputs": {k: list(v.shape) for k, v in first.items()}}


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


def load_arrays(path: str, specs: list[TensorSpec], what: str = "calibration") -> tuple[dict, np.ndarray | None]:
    """Read .npz (keyed by input name, optional 'labels') or .npy (single input)."""
    file = Path(path)
    names = [s.name for s in specs]
    if not file.exists():
        raise InputError(f"{what} data not found: {file}")
    try:
        if file.suffix == ".npy":
            if len(names) != 1:
                raise InputError(f"{file} is one array but the model has inputs {names}: use an .npz keyed by input name")
            arrays = {names[0]: _load_npy(file)}
        else:
            arrays = interface.load_inputs(str(file))
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read {what} data {file}: {first_line(exc)}") from None
    except HarnessError as exc:
        raise InputError(f"{what} data: {exc}") from None
    labels = arrays.pop("labels", None)
    if len(names) == 1 and len(arrays) == 1 and next(iter(arrays)) not in names:
        arrays = {names[0]: next(iter(arrays.values()))}
    return arrays, labels


def _load_npy(file: Path) -> np.ndarray:
    """One .npy array, its declared size checked against memory before it is read, then its values."""
    header = np.load(file, mmap_mode="r", allow_pickle=False)
    if header.nbytes > interface.memory_limit():
        raise InputError(f"{file} declares {header.nbytes / 2**30:.1f} GiB, more than this machine can spare")
    array = np.array(header)
    interface.check_arrays({file.stem: array}, str(file))
    return array


def load_images(folder: Path, specs: list[TensorSpec], spec: ImagePreprocess) -> dict[str, np.ndarray]:
    """A folder of images -> one float32 input, resized and normalized as `spec` says."""
    from PIL import Image

    if len(specs) != 1:
        raise InputError(f"an image folder feeds one input, but the model has {[s.name for s in specs]}: use an .npz")
    name, shape = specs[0].name, specs[0].shape or []
    layout = spec.layout
    size = spec.size or (tuple(shape[2:4]) if layout == "nchw" else tuple(shape[1:3]))
    if len(size) != 2 or any(not isinstance(d, int) for d in size):
        raise InputError("the image size is unknown: pass --preprocess size=H/W")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    batch = []
    for file in files:
        try:
            with Image.open(file) as opened:
                image = opened.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # corrupt, truncated, huge
            raise InputError(f"cannot read the image {file}: {first_line(exc)}") from None
        pixels = np.asarray(image, dtype=np.float32) / spec.scale
        if spec.order == "bgr":
            pixels = pixels[..., ::-1]
        pixels = (pixels - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
        batch.append(pixels.transpose(2, 0, 1) if layout == "nchw" else pixels)
    return {name: np.stack(batch).astype(np.float32)}


def load_calibration(path: str, model: ir.Model, specs: list[TensorSpec], preprocess: str | None = None
                     ) -> CalibrationData:
    """Read --calibration: an .npz/.npy, an image folder (with --preprocess), or the word 'random'.

    `random` makes valid samples for every input the way the bundled samples are made
    (package/samples.py): noise for data, in-range values for indices and shapes.
    """
    if path == RANDOM:
        from edgec.package.samples import generate

        rng = np.random.default_rng(0)
        values = {v.name: v for v in model.graph.inputs}
        stacked = {s.name: generate(model, values[s.name], RANDOM_SAMPLES, rng) for s in specs}
        return CalibrationData(split(specs, stacked, RANDOM), specs, RANDOM, random=True)
    folder = Path(path)
    if folder.is_dir():
        arrays = load_images(folder, specs, ImagePreprocess.parse(preprocess))
        return CalibrationData(split(specs, arrays, str(folder), dynamic_batch=1), specs, str(folder),
                               extra={"preprocess": preprocess})
    arrays, labels = load_arrays(path, specs)
    return CalibrationData(split(specs, arrays, str(path), dynamic_batch=1), specs, str(path), labels=labels)


def load_eval(path: str, specs: list[TensorSpec]) -> CalibrationData:
    """Read --eval: inputs keyed by input name and, optionally, integer 'labels' (one per sample)."""
    arrays, labels = load_arrays(path, specs, "evaluation")
    runs = split(specs, arrays, str(path), dynamic_batch=1)
    samples = sum(rows(specs, feed) for feed in runs)
    if labels is not None and len(labels) != samples:
        raise InputError(f"{path}: 'labels' has {len(labels)} rows but the inputs hold {samples} samples")
    return CalibrationData(runs, specs, str(path), labels=labels)


def rows(specs: list[TensorSpec], feed: dict) -> int:
    """How many samples one run holds: its size along the batch axis, else one."""
    spec = specs[0]
    return feed[spec.name].shape[spec.batch_axis] if spec.batch_axis is not None else 1
