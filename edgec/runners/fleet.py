"""The devices a command runs on: `--device` values (repeatable) and `--fleet FILE`, a TOML list:

    [[device]]
    name = "pi4-kitchen"
    url = "ssh://pi@10.0.0.7"
    identity = "~/.ssh/id_pi"        # optional, like every key below: the command line's value else
    known_hosts = "~/.ssh/known_hosts"
    python = "/usr/bin/python3"
    accept_new_host_key = false
    keep_remote = false
    offline_wheels = "wheels/"
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from edgec.errors import InputError
from edgec.runners import DeviceSpec, SshOptions

PATH_KEYS = ("identity", "known_hosts", "offline_wheels")


def load_fleet(path: str | Path, defaults: SshOptions = SshOptions()) -> list[DeviceSpec]:
    """The named devices of a fleet file; a key a device leaves out takes `defaults`' value."""
    path = Path(path)
    try:
        entries = tomllib.loads(path.read_text()).get("device", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read the fleet file {path}: {exc}") from None
    known = {f.name for f in dataclasses.fields(SshOptions)}
    specs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "url" not in entry:
            raise InputError(f"fleet file {path}: device {index + 1} has no url (write url = \"ssh://user@host\")")
        unknown = set(entry) - known - {"name", "url"}
        if unknown:
            raise InputError(f"fleet file {path}: device {index + 1} has unknown keys {', '.join(sorted(unknown))}; "
                             f"known: name, url, {', '.join(sorted(known))}")
        options = {k: Path(v).expanduser() if k in PATH_KEYS else v for k, v in entry.items() if k in known}
        specs.append(DeviceSpec(entry["url"], entry.get("name", ""), dataclasses.replace(defaults, **options)))
    if not specs:
        raise InputError(f"fleet file {path} lists no devices: add [[device]] tables with a url each")
    return specs


def device_specs(urls: tuple[str, ...], fleet_file: str | None, ssh: SshOptions) -> list[DeviceSpec]:
    """The devices named by --device (repeatable) and --fleet; none means the target's own device."""
    specs = [DeviceSpec(url, "", ssh) for url in urls]
    if fleet_file:
        specs += load_fleet(fleet_file, ssh)
    return specs
