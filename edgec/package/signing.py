"""Ed25519 signatures over an artifact's manifest: hashes prove an artifact is self-consistent, a
signature proves who built it. The manifest hashes every file, so signing it signs them all.

Keys are PEM files, as `openssl genpkey -algorithm ed25519 -out key.pem` and
`openssl pkey -in key.pem -pubout -out key.pub` make them.
"""
from __future__ import annotations

import base64
from pathlib import Path

from edgec.errors import InputError, IntegrityError
from edgec.package.artifact import SIGNATURE
from edgec.package.harness.manifest import MANIFEST


def _key(path: str | Path, private: bool):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    kind = "private" if private else "public"
    try:
        data = Path(path).read_bytes()
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path} is not a readable Ed25519 {kind} key in PEM form ({type(exc).__name__}): make one "
                         "with `openssl genpkey -algorithm ed25519`") from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise InputError(f"{path} is not an Ed25519 {kind} key")
    return key


def sign(artifact: str | Path, key: str | Path) -> Path:
    """Write the artifact's signature (base64 of the Ed25519 signature of edgec.json's bytes)."""
    from edgec.package.artifact import check_integrity, read_manifest

    artifact = Path(artifact)
    check_integrity(artifact, read_manifest(artifact))  # sign only what is self-consistent
    signature = _key(key, private=True).sign((artifact / MANIFEST).read_bytes())
    path = artifact / SIGNATURE
    path.write_text(base64.b64encode(signature).decode() + "\n")
    return path


def check_signature(artifact: str | Path, public_key: str | Path) -> None:
    """Refuse (exit 4) an artifact whose manifest is not signed by the holder of `public_key`."""
    from cryptography.exceptions import InvalidSignature

    artifact = Path(artifact)
    key = _key(public_key, private=False)
    try:
        signature = base64.b64decode((artifact / SIGNATURE).read_text().strip(), validate=True)
        key.verify(signature, (artifact / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise IntegrityError(f"{artifact} is not signed ({SIGNATURE} is missing): refusing to run it") from None
    except (OSError, ValueError, InvalidSignature):
        raise IntegrityError(f"{artifact}'s signature does not match {public_key}: refusing to run it") from None
