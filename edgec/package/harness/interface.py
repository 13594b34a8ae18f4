"""Moving data into and out of an artifact's interface, and into the runs a model takes.

The interface is what the manifest's TensorSpecs say: a layout (a transpose of the source
model's) and, for integer I/O, a quantization. The build converts its samples with
`to_interface`; verify turns outputs back into real values with `real_values`.

Arrays keyed by input name come in one of three forms, told apart by rank:

* stacked: every array has one more axis than its input, in front: runs stacked one per entry;
* batched: every array has its input's rank and every input has a batch axis: samples are
  concatenated along it, and fed in the model's batch size (all at once when it is dynamic);
* single: every array has its input's rank, and the model has no batch: one run.

Outputs come back in the same form: stacked, concatenated along each output's batch axis, or
as the one run's outputs.
"""
import io
import os
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import numpy as np

from .errors import HarnessError
from .manifest import Quantization, TensorSpec

STACKED, BATCHED, SINGLE = "stacked", "batched", "single"
# numpy's savez stamps the current time into the zip entries: a fixed one keeps files byte-identical.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def save(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """An .npz of arrays keyed by tensor name, the same bytes for the same arrays."""
    try:
        archive = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
    except OSError as exc:
        raise HarnessError(f"cannot write {path} ({exc.strerror})") from None
    with archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name], order="C"), allow_pickle=False)  # keeps 0-d
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def load(path: str) -> Dict[str, np.ndarray]:
    """Arrays keyed by tensor name from an .npz (never pickles); the sizes its headers declare are checked
    against memory before anything is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            claimed = sum(_declared_bytes(archive, name) for name in archive.namelist())
        limit = memory_limit()
        if claimed > limit:
            raise HarnessError(f"{path} declares {claimed / 2**30:.1f} GiB of arrays, more than the "
                               f"{limit / 2**30:.1f} GiB of memory this machine can spare: use fewer samples")
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise HarnessError(f"cannot read {path} as an .npz of arrays keyed by name ({exc})") from None
    return arrays


def load_inputs(path: str) -> Dict[str, np.ndarray]:
    """A user's model inputs: `load`, then `check_arrays` (outputs may hold Inf, or nothing; inputs not)."""
    arrays = load(path)
    check_arrays(arrays, path)
    return arrays


def _declared_bytes(archive: zipfile.ZipFile, name: str) -> int:
    """The bytes an .npy member's header says its array holds (read without reading the array)."""
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(member)
    count = 1
    for dim in shape:
        count *= dim
    return count * dtype.itemsize


def check_arrays(arrays: Dict[str, np.ndarray], path: str) -> None:
    """Refuse what no model input can take: no arrays, no values at all, complex, object or text values,
    NaN or Inf. One empty array beside others is a valid input (an empty axes list)."""
    if not arrays:
        raise HarnessError(f"{path} holds no arrays")
    if all(np.asarray(value).size == 0 for value in arrays.values()):
        raise HarnessError(f"{path}: every array is empty: there are no samples")
    for name, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise HarnessError(f"{path}: '{name}' holds {value.dtype} values; inputs are real numbers or booleans")
        if value.dtype.kind == "f":
            bad = ~np.isfinite(value)
            if bad.any():
                first = int(np.argwhere(bad)[0][0]) if value.ndim else 0
                raise HarnessError(f"{path}: '{name}' holds {int(bad.sum())} NaN or Inf value(s), the first in "
                                   f"sample {first}: remove or fix those samples")


def memory_limit() -> int:
    """Half the memory available now (Linux's MemAvailable; else the physical memory): what one run's data
    may take."""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
        return kib * 1024 // 2
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def quantize(value: np.ndarray, q: Quantization, dtype: str) -> np.ndarray:
    """Real values to the integers that represent them (round to nearest, saturate)."""
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(value, np.float64) / q.scale) + q.zero_point, info.min, info.max).astype(dtype)


def dequantize(value: np.ndarray, q: Quantization) -> np.ndarray:
    return ((np.asarray(value, np.float64) - q.zero_point) * q.scale).astype(np.float32)


def _permute(value: np.ndarray, perm: Optional[List[int]], stacked: bool) -> np.ndarray:
    if not perm:
        return value
    axes = [0, *(p + 1 for p in perm)] if stacked else list(perm)
    return np.ascontiguousarray(np.transpose(value, axes))


def _inverse(perm: List[int]) -> List[int]:
    return [perm.index(i) for i in range(len(perm))]


def to_interface(arrays: Dict[str, np.ndarray], specs: List[TensorSpec], stacked: bool,
                 quantized: bool = True) -> Dict[str, np.ndarray]:
    """Source-model arrays in the interface's layout and, when `quantized`, its dtype.

    Outputs keep real values (`quantized=False`): they are what integer outputs are judged
    against once `real_values` has dequantized them.
    """
    result = {}
    for spec in specs:
        value = _permute(np.asarray(arrays[spec.name]), spec.source_perm, stacked)
        if quantized and spec.quantization is not None:
            value = quantize(value, spec.quantization, spec.dtype)
        elif quantized:
            value = value.astype(spec.dtype, copy=False)
        result[spec.name] = value
    return result


def real_values(arrays: Dict[str, np.ndarray], specs: List[TensorSpec]) -> Dict[str, np.ndarray]:
    """Integer outputs (an int8 interface) as the real values they stand for; others unchanged."""
    result = dict(arrays)
    for spec in specs:
        if spec.quantization is not None and spec.name in result:
            result[spec.name] = dequantize(result[spec.name], spec.quantization)
    return result


def to_source_layout(arrays: Dict[str, np.ndarray], specs: List[TensorSpec], stacked: bool) -> Dict[str, np.ndarray]:
    """Arrays in the interface's layout back in the source model's layout."""
    return {spec.name: _permute(arrays[spec.name], spec.source_perm and _inverse(spec.source_perm), stacked)
            for spec in specs if spec.name in arrays}


# --------------------------------------------------------------------------- runs


def find_batch_axes(inputs: List[TensorSpec], outputs: List[TensorSpec]) -> Optional[Dict[str, int]]:
    """Each input's and output's batch axis, or None when the model has no batch that all of them share.

    The batch is a symbolic dimension that every input and every output has exactly once (at
    any axis: an RNN's state carries it at axis 1); failing that, axis 0 where every input has the
    same symbol or size (not 0) there and every output has it too or a symbol of its own (exporters
    name an output's batch apart, 'Gemm_dim_0'; an export may fix the batch and not the image size).
    Batching along anything else could mix samples.
    """
    tensors = inputs + outputs
    if not inputs or any(not t.shape for t in tensors):
        return None
    for symbol in (d for d in inputs[0].shape if isinstance(d, str)):
        if all(t.shape.count(symbol) == 1 for t in tensors):
            return {t.name: t.shape.index(symbol) for t in tensors}
    firsts = {t.shape[0] for t in inputs}
    first = next(iter(firsts))
    if len(firsts) == 1 and first != 0 and all(t.shape[0] == first or isinstance(t.shape[0], str) for t in outputs):
        return {t.name: 0 for t in tensors}
    return None


def batch_size(spec: TensorSpec) -> Optional[int]:
    """The static size of a spec's batch axis (None when it has no batch or a dynamic one)."""
    if spec.batch_axis is None or spec.shape is None:
        return None
    size = spec.shape[spec.batch_axis]
    return size if isinstance(size, int) else None


@dataclass
class Runs:
    """Arrays split into the feeds a model takes, and how to put their outputs back together."""

    form: str
    feeds: List[Dict[str, np.ndarray]]

    def __len__(self) -> int:
        return len(self.feeds)

    def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
        return iter(self.feeds)

    def merge(self, outputs: List[Dict[str, np.ndarray]], specs: List[TensorSpec]) -> Dict[str, np.ndarray]:
        """One array per output from the outputs of every run, in the form the inputs came in."""
        if self.form == SINGLE:
            return dict(outputs[0])
        merged = {}
        for spec in specs:
            parts = [out[spec.name] for out in outputs]
            merged[spec.name] = np.stack(parts) if self.form == STACKED else np.concatenate(parts, spec.batch_axis)
        return merged


def _expected(spec: TensorSpec) -> str:
    return "[" + ", ".join(str(d) for d in spec.shape) + "]" if spec.shape is not None else "any shape"


def form_of(specs: List[TensorSpec], arrays: Dict[str, np.ndarray]) -> str:
    """Which of the three forms `arrays` is in; a mixture or a wrong rank is refused in one line."""
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise HarnessError(f"no array for input(s) {missing}; the arrays are {sorted(arrays)} "
                           "(key each array by the model's input name)")
    batched = all(s.batch_axis is not None for s in specs)
    forms = set()
    for spec in specs:
        value = np.asarray(arrays[spec.name])
        if spec.rank is None or value.ndim == spec.rank:
            forms.add(BATCHED if batched and spec.rank else SINGLE)
        elif value.ndim == spec.rank + 1:
            forms.add(STACKED)
        else:
            how = f"{_expected(spec)} for one run, or [runs, ...] stacked"
            if batched:
                how += f", or samples concatenated along axis {spec.batch_axis}"
            raise HarnessError(f"input '{spec.name}' has shape {list(value.shape)}: the model takes {how}")
    if len(forms) > 1:
        raise HarnessError("some inputs are stacked runs and others are not: give every input in the same form "
                           "(one more leading axis than the model's input for stacked runs)")
    return forms.pop() if forms else SINGLE


def split(specs: List[TensorSpec], arrays: Dict[str, np.ndarray], dynamic_batch: Optional[int] = None) -> Runs:
    """The runs that feed `arrays` (keyed by input name) to a model with inputs `specs`.

    Batched samples go in the model's batch size; where that is dynamic, `dynamic_batch` at a
    time (calibration wants one sample per run), or all at once.
    """
    form = form_of(specs, arrays)
    values = {s.name: cast(s, np.asarray(arrays[s.name])) for s in specs}
    if form == SINGLE:
        return Runs(form, [values])
    if form == STACKED:
        counts = {len(v) for v in values.values()}
        if len(counts) > 1:
            raise HarnessError(f"the inputs stack different numbers of runs: {sorted(counts)}")
        return Runs(form, [{name: v[i, ...] for name, v in values.items()} for i in range(counts.pop())])
    totals = {s.name: values[s.name].shape[s.batch_axis] for s in specs}
    if len(set(totals.values())) > 1:
        raise HarnessError(f"the inputs hold different numbers of samples along their batch axes: {totals}")
    total = next(iter(totals.values()))
    steps = {batch_size(s) for s in specs} - {None}
    step = steps.pop() if steps else min(dynamic_batch or total, total)
    if step == 0 or total % step:
        raise HarnessError(f"{total} samples do not split into batches of {step}, the model's batch size")
    feeds = []
    for start in range(0, total, step):
        rows = slice(start, start + step)
        feeds.append({s.name: values[s.name][(slice(None),) * s.batch_axis + (rows,)] for s in specs})
    return Runs(form, feeds)


def check_feed(specs: List[TensorSpec], feed: Dict[str, np.ndarray]) -> None:
    """Refuse a run whose names, dtypes or static dimensions are not the model's inputs."""
    names = {s.name for s in specs}
    if set(feed) != names:
        raise HarnessError(f"the model's inputs are {sorted(names)}, the feed has {sorted(feed)}")
    for spec in specs:
        value = feed[spec.name]
        if value.dtype != np.dtype(spec.dtype):
            raise HarnessError(f"input '{spec.name}' is {value.dtype}, the model takes {spec.dtype}")
        if spec.shape is not None and (value.ndim != len(spec.shape) or any(
                isinstance(d, int) and d != v for d, v in zip(spec.shape, value.shape))):
            raise HarnessError(f"input '{spec.name}' has shape {list(value.shape)} per run, expected {_expected(spec)}")


def cast(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    """`value` in the spec's dtype when that changes only the width (float64 to float32); a change of
    kind (float to int8) is refused: quantize with `to_interface` first."""
    dtype = np.dtype(spec.dtype)
    if value.dtype == dtype:
        return value
    if value.dtype.kind not in "biuf":
        raise HarnessError(f"input '{spec.name}' has dtype {value.dtype}, expected a numeric array")
    if not np.can_cast(value.dtype, dtype, casting="same_kind"):
        raise HarnessError(f"input '{spec.name}' is {value.dtype}, the model takes {dtype}"
                           + (f" (quantized with scale {spec.quantization.scale:g} and zero point "
                              f"{spec.quantization.zero_point})" if spec.quantization else ""))
    return value.astype(dtype)
