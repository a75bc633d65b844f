"""Copy this host's effective pip configuration into a root filesystem as one /etc/pip.conf.

Reads what ``pip config list`` reports (files and ``PIP_*`` environment, the environment
winning as in pip), drops local ``file://`` indexes and find-links directories (not reachable
inside a container build), and copies the files the config names (CA bundle, constraints).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

LOCATION_KEYS = ("index-url", "extra-index-url", "find-links")
FILE_KEYS = ("cert", "client-cert", "constraint")


def pip_config_lines() -> list[str]:
    """``section.key='value'`` lines, as pip itself resolves them."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.splitlines()


def merged(lines: list[str]) -> dict[str, dict[str, str]]:
    """Section -> key -> value; ``:env:`` entries go to [global] and take precedence."""
    files = [line for line in lines if not line.startswith(":env:")]
    envs = [line for line in lines if line.startswith(":env:")]
    result: dict[str, dict[str, str]] = {}
    for line in files + envs:
        name, _, raw = line.partition("=")
        section, _, key = name.rpartition(".")
        section = "global" if section == ":env:" else section
        result.setdefault(section, {})[key] = raw.strip().strip("'\"")
    return result


def is_local(location: str) -> bool:
    """A local path or ``file:`` URL, as opposed to a network index."""
    return location.startswith(("file:", "/", "./", "../"))


def portable(config: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Drop local indexes and find-links; keep every other setting as is."""
    out: dict[str, dict[str, str]] = {}
    for section, values in config.items():
        for key, value in values.items():
            kept = value
            if key in LOCATION_KEYS:
                kept = " ".join(v for v in value.split() if not is_local(v))
            if kept:
                out.setdefault(section, {})[key] = kept
    return out


def copy_files(config: dict[str, dict[str, str]], rootfs: Path) -> None:
    """Copy each file the config names to the same path inside ``rootfs``."""
    for values in config.values():
        for key in FILE_KEYS:
            source = Path(values.get(key, ""))
            if source.is_absolute() and source.is_file():
                target = rootfs / source.relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


def write(config: dict[str, dict[str, str]], rootfs: Path) -> None:
    """Write the config as ``/etc/pip.conf`` in ``rootfs``."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict(config)
    with (rootfs / "etc" / "pip.conf").open("w", encoding="utf-8") as handle:
        parser.write(handle)


def main(argv: list[str]) -> int:
    """Entry point: ``pip_config_copy.py ROOTFS``."""
    rootfs = Path(argv[1])
    config = portable(merged(pip_config_lines()))
    copy_files(config, rootfs)
    write(config, rootfs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
