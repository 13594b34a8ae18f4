"""Writing an artifact's folder: the harness, the manifest, the README; reading its manifest back.

It is written into a temporary folder beside the destination and renamed into place at the
end, so a failed build never leaves a half-written artifact behind.
"""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from edgec.errors import InputError
from edgec.package.harness.manifest import MANIFEST, FileEntry, Manifest, ManifestError, dumps, loads

HARNESS_PACKAGE = "edgec_harness"
SHARED_MODULES = ("__init__.py", "errors.py", "manifest.py", "interface.py", "compare.py", "session.py",
                  "commands.py")
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256(path), path.stat().st_size)


def install_harness(folder: Path, session: str, requirements: list[str]) -> None:
    """Copy run.py, the shared harness modules and the backend's adapter (`module:Class`) into the artifact."""
    harness = resources.files("edgec.package") / "harness"
    (folder / "run.py").write_text((harness / "run.py").read_text())
    package = folder / HARNESS_PACKAGE
    package.mkdir()
    for name in (*SHARED_MODULES, session.split(":")[0] + ".py"):
        (package / name).write_text((harness / name).read_text())
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST).write_text(dumps(manifest))


def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder} is not an edgec artifact (no {MANIFEST}); build one with `edgec build`")
    try:
        return loads(path.read_text(), str(path))
    except ManifestError as exc:
        raise InputError(str(exc)) from None


def write_readme(folder: Path, manifest: Manifest) -> None:
    def io(specs) -> str:
        return ", ".join(f"{s.name} {s.shape} {s.dtype}" for s in specs)

    text = f"""# {manifest.source.name} for {manifest.target.name} ({manifest.precision})

Built by edgec {manifest.edgec_version}. Runs with {manifest.runtime.requirement} and numpy only.

    pip install -r requirements.txt
    python run.py verify                                  # run the bundled samples, compare with expected outputs
    python run.py infer --inputs in.npz --outputs out.npz # your inputs, keyed by input name
    python run.py bench --warmup 10 --iters 100 --threads {manifest.target.threads} --json bench.json
    python run.py profile                                 # per-layer times, where the runtime offers them

Inputs: {io(manifest.inputs)}
Outputs: {io(manifest.outputs)}

An .npz for `infer` holds one array per input: one run shaped like the input, several runs
stacked along a new first axis, or (for inputs with a batch axis) samples concatenated along it.

`edgec.json` records the build: versions, shapes, quantization, hashes and the verification results.
Exit codes: 0 ok, 1 a bug in edgec, 2 bad input, 3 outputs disagree, 4 files do not match the
manifest, 5 the runtime is not installed.
"""
    (folder / "README.md").write_text(text)
