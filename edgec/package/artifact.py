"""Writing an artifact's folder: the harness, the manifest, the README; reading its manifest back.

It is written into a temporary folder beside the destination and renamed into place at the
end, so a failed build never leaves a half-written artifact behind.
"""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from edgec.errors import InputError, IntegrityError
from edgec.package.harness.manifest import MANIFEST, FileEntry, Manifest, ManifestError, ModelFiles, dumps, loads

HARNESS_PACKAGE = "edgec_harness"
SIGNATURE = "edgec.json.sig"
UNHASHED = (MANIFEST, SIGNATURE)
DEVICE_CACHE = "engines/"  # engines a device builds for itself (TensorRT), checked by their own keys: not hashed
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


def model_files(folder: Path, names: list[str]) -> ModelFiles:
    """The model files a backend wrote into `folder`, hashed; the first is the one its session loads."""
    entries = {name: file_entry(folder / name) for name in names}
    return ModelFiles(names[0], entries, sum(entry.bytes for entry in entries.values()))


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
    """Write the manifest with the hash of every file now in `folder`."""
    manifest.files = {name: file_entry(folder / name) for name in listed_files(folder)}
    (folder / MANIFEST).write_text(dumps(manifest))


def listed_files(folder: Path) -> list[str]:
    """Every file of an artifact that its manifest must hash: all but the manifest and its signature."""
    names = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if not p.is_dir())
    return [name for name in names if name not in UNHASHED and not name.startswith(DEVICE_CACHE)]


def check_integrity(folder: Path, manifest: Manifest) -> None:
    """With edgec's own code, before any of the artifact's runs: every file is listed and matches its hash."""
    folder = Path(folder)
    present = listed_files(folder)
    unlisted = [name for name in present if name not in manifest.files]
    if unlisted:
        raise IntegrityError(f"{folder} holds {len(unlisted)} file(s) its manifest does not list ({unlisted[0]}"
                             f"{', ...' if len(unlisted) > 1 else ''}): refusing to run it")
    for name, entry in sorted(manifest.files.items()):
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise IntegrityError(f"{folder}: {name} is missing or not a plain file: refusing to run it")
        if file_entry(path) != entry:
            raise IntegrityError(f"{folder}: {name} does not match the manifest's sha256: refusing to run it")


def foreign_code(folder: Path, manifest: Manifest) -> list[str]:
    """The harness files of an artifact that differ from the ones this edgec ships."""
    harness = resources.files("edgec.package") / "harness"
    shipped = {"run.py": harness / "run.py"}
    for name in (*SHARED_MODULES, manifest.runtime.session.split(":")[0] + ".py"):
        shipped[f"{HARNESS_PACKAGE}/{name}"] = harness / name
    differ = []
    for name, source in shipped.items():
        path = Path(folder) / name
        if not path.is_file() or not source.is_file() or path.read_bytes() != source.read_bytes():
            differ.append(name)
    return differ


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
