"""buildah and podman over one private vfs storage: build the image, run it, inspect it."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# podman raises RLIMIT_NPROC by default; this sandbox lacks CAP_SYS_RESOURCE, so runc would fail
# to start the container. An explicit, modest limit is set instead (nofile as the issue asks).
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")


def default_root() -> Path:
    """Storage kept between runs (the stand-in base image is the slow part to build)."""
    explicit = os.environ.get("CONTAINERS_ROOT")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "uminfer-exporter" / "containers"


@dataclass(frozen=True)
class Engine:
    """Runs buildah/podman against ``root`` (vfs driver, so no overlay or fuse needed)."""

    root: Path

    def storage(self) -> list[str]:
        """The storage flags both tools share, so podman sees what buildah built."""
        return ["--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "vfs"]

    def env(self) -> dict[str, str]:
        """The environment for helper scripts (build-base.sh reads CONTAINERS_ROOT)."""
        return {**os.environ, "CONTAINERS_ROOT": str(self.root)}

    def buildah(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run buildah; raise with its output when it fails."""
        return run(["buildah", *self.storage(), *args], timeout)

    def podman(self, *args: str, timeout: float = 60,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run podman without systemd (cgroupfs, file events): there is none here."""
        cmd = ["podman", *self.storage(), "--cgroup-manager=cgroupfs",
               "--events-backend=file", *args]
        return run(cmd, timeout, check=check)

    def build(self, context: Path, tag: str) -> None:
        """Build ``context``'s Dockerfile as is; Docker format, since OCI drops HEALTHCHECK."""
        self.buildah("bud", "--isolation", "chroot", "--format", "docker", "--pull=never",
                     "--layers=false", "--tag", tag, str(context), timeout=420)

    def inspect_image(self, tag: str) -> dict[str, Any]:
        """``podman image inspect`` of one image."""
        out = self.podman("image", "inspect", tag).stdout
        return dict(json.loads(out)[0])

    def run_detached(self, tag: str, name: str, volume: str, args: list[str]) -> None:
        """Start the image on the host network with explicit ulimits and the runc runtime."""
        self.podman("run", "--detach", "--name", name, "--runtime", "runc", "--network", "host",
                    "--no-healthcheck", *ULIMITS, "--volume", volume, tag, *args)

    def run_once(self, tag: str, command: list[str], user: str = "") -> str:
        """Run ``command`` (entrypoint first) once in the image, without network; its stdout."""
        who = ["--user", user] if user else []
        return self.podman("run", "--rm", "--runtime", "runc", "--network", "none",
                           "--no-healthcheck", *ULIMITS, *who, "--entrypoint", command[0],
                           tag, *command[1:]).stdout

    def remove(self, name: str) -> None:
        """Remove a container if it exists, whatever its state."""
        self.podman("rm", "--force", "--ignore", name, check=False)


def run(cmd: list[str], timeout: float, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise with its output, which says what went wrong."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return proc
