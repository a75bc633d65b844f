"""Secret hygiene: force every error path, then grep every output channel for the private key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.config import ConfigError, load_config, parse_config, redacted
from exporter.core.clock import SystemClock
from exporter.core.usage import Totals
from exporter.simulator import EventStore, Fault, FaultKind, SimulatorServer
from tests import fleet
from tests.harness import Exporter, wait_for

pytestmark = pytest.mark.e2e

KEY = fleet.PRIVATE
FAULTS = {
    **{f"k-rc{code}": Fault(FaultKind.RETCODE, retcode=code)
       for code in (110, 130, 150, 153, 161, 171, 172, 299, 2317)},
    **{f"k-http{status}": Fault(FaultKind.HTTP, status=status) for status in (429, 500, 503)},
    "k-timeout": Fault(FaultKind.TIMEOUT, delay=1.3, then="drop"),
    "k-reset": Fault(FaultKind.RESET),
    "k-malformed": Fault(FaultKind.MALFORMED),
    "k-wrongtype": Fault(FaultKind.WRONG_TYPE),
    "k-negative": Fault(FaultKind.NEGATIVE),
    "k-absurd": Fault(FaultKind.ABSURD),
}


def _with_key(base: dict[str, Any], where: str) -> dict[str, Any]:
    """``base`` with the literal private key set right, and also pasted into a wrong field."""
    config = copy.deepcopy(base)
    api = config["api"]
    api["private_key"] = KEY
    if where == "endpoint":
        api["endpoint"] = KEY
    elif where == "timeout":
        api["timeout"] = KEY
    elif where == "label name":
        config["targets"][0]["labels"] = {KEY: "x"}
    elif where == "key name":
        api[KEY] = 1
    elif where == "window":
        config["windows"] = [KEY]
    elif where == "key file":
        api["public_key_file"] = KEY
    elif where == "typo":
        del api["private_key"]
        api["privat_key"] = KEY
    return config


WRONG_FIELDS = ["endpoint", "timeout", "label name", "key name", "window", "key file", "typo"]
BROKEN_YAML = f"api: {{private_key: {KEY}, endpoint: [\ntargets: [}}\n"


def test_config_errors_and_repr_never_show_the_key(tmp_path: Path) -> None:
    base = fleet.fleet_config("http://127.0.0.1:9/", ["k"])
    for where in WRONG_FIELDS:
        with pytest.raises(ConfigError) as caught:
            parse_config(_with_key(base, where), {}, str(tmp_path))
        text = f"{caught.value}|{caught.value!r}|{caught.value.problems}"
        assert caught.value.problems, where
        assert KEY not in text, where
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_YAML)
    with pytest.raises(ConfigError) as broken:
        load_config(str(path), {})
    assert KEY not in f"{broken.value}{broken.value!r}"
    good = parse_config(_with_key(base, "none"), {}, str(tmp_path))
    assert good.api.private_key == KEY
    assert KEY not in f"{good!r}{good.api!r}{good}{redacted(good)}"


def _reload(child: Exporter, text: str) -> str:
    child.config_path.write_text(text)
    response = requests.post(f"{child.url}/-/reload", timeout=10)
    return f"{response.status_code} {response.text}"


def _drive_every_error_path(child: Exporter, base: dict[str, Any], impostor: str) -> list[str]:
    """Reloads that fail, a state file that cannot be written, a real bad signature."""
    seen = [_reload(child, yaml.safe_dump(_with_key(base, where))) for where in WRONG_FIELDS]
    seen.append(_reload(child, BROKEN_YAML))
    unwritable = copy.deepcopy(base)
    unwritable["state"] = {"path": str(child.workdir / "missing-dir" / "state.json")}
    seen.append(_reload(child, yaml.safe_dump(unwritable)))
    wait_for(lambda: "cannot write state file" in child.log(), 10, "a failed state write")
    # The impostor gateway holds another private key for our public key: a genuine 171.
    seen.append(_reload(child, yaml.safe_dump({**base, "api": {**base["api"],
                                                                "endpoint": impostor}})))
    wait_for(lambda: "signature wrong" in child.log(), 10, "a genuine bad-signature answer")
    return seen


def _channels(child: Exporter, state: Path) -> dict[str, str]:
    pages = {path: requests.get(child.url + path, timeout=5).text
             for path in ("/metrics", "/", "/-/healthy", "/-/ready", "/nope")}
    return {**pages, "state file": state.read_text()}


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_no_channel_ever_shows_the_private_key(tmp_path: Path, fmt: str) -> None:
    state = tmp_path / "state.json"
    keys = ["k-ok", *FAULTS]
    with (fleet.simulator() as sim,
          SimulatorServer(EventStore(), {fleet.PUBLIC: "another-key"}, SystemClock()) as other):
        for key, fault in FAULTS.items():
            sim.faults.add(fault, key=key)
        base = fleet.fleet_config(sim.url, keys, api={"timeout": "1s"},
                                  state={"path": str(state)})
        with fleet.exporter(tmp_path, base, f"--log.format={fmt}") as child:
            fleet.add_usage(sim, "k-ok", Totals(1, 1, 2, 1, 0))
            wait_for(lambda: all(fleet.value(child.metrics(), "uminfer_up", k) == 0
                                 for k in FAULTS), 10, "every faulted target down")
            outputs = _channels(child, state)
            replies = _drive_every_error_path(child, base, other.url)
            assert child.stop() == 0
            log = child.log()
    assert all(reply.startswith("500 reload failed") for reply in replies[:-2]), replies
    assert "retrying" in log and "RetCode 153" in log and "config reload rejected" in log
    assert "level=debug" in log if fmt == "logfmt" else '"level": "debug"' in log
    for channel, text in {**outputs, "log": log, "reload replies": "\n".join(replies)}.items():
        assert KEY not in text, channel
