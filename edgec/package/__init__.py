"""The artifact: a self-contained folder that runs on the device with the runtime and numpy only.

It is written into a staging folder beside the destination and renamed into place at the
end, so a failed build never leaves a half-written artifact behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from edgec.errors import InputError

MANIFEST = "edgec.json"
SCHEMA_VERSION = 1
# Allowed max abs error relative to the reference output's range, per precision.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.25}
# Allowed difference between the device and the build host running the same artifact.
HOST_TOLERANCE = 1e-5


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict:
    return {"sha256": sha256(path), "bytes": path.stat().st_size}


@contextlib.contextmanager
def staging(output: Path, force: bool):
    """Yield an empty folder; on success it replaces `output`, on failure it disappears."""
    output = Path(output)
    if output.exists() and not force:
        raise InputError(f"output folder {output} already exists: choose another -o or pass --force")
    output.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.edgec-", dir=output.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    stage.chmod(0o755)
    stage.rename(output)


def install_harness(folder: Path, adapter: str, requirements: list[str]) -> None:
    """Copy the shared run.py and the backend's runtime adapter into the artifact."""
    harness = resources.files("edgec.package") / "harness"
    (folder / "run.py").write_text((harness / "run.py").read_text())
    (folder / "edgec_runtime.py").write_text((harness / adapter).read_text())
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise InputError(f"{folder} is not an edgec artifact (no {MANIFEST}); build one with `edgec build`")
    return json.loads(path.read_text())


def write_readme(folder: Path, manifest: dict) -> None:
    inputs = ", ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in manifest["inputs"])
    outputs = ", ".join(f"{o['name']} {o['shape']} {o['dtype']}" for o in manifest["outputs"])
    text = f"""# {manifest['source']['name']} for {manifest['target']['name']} ({manifest['precision']})

Built by edgec {manifest['edgec_version']}. Runs with {manifest['runtime']['requirement']} and numpy only.

    pip install -r requirements.txt
    python run.py verify                                  # run the bundled samples, compare with expected outputs
    python run.py infer --inputs in.npz --outputs out.npz # your inputs, keyed by input name
    python run.py bench --warmup 10 --iters 100 --threads {manifest['target']['threads']} --json bench.json
    python run.py profile                                 # per-layer times, where the runtime offers them

Inputs: {inputs}
Outputs: {outputs}

`edgec.json` records the build: versions, shapes, quantization, hashes and the verification results.
"""
    (folder / "README.md").write_text(text)
