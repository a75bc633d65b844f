"""The ``accounting`` origin and the ``ha`` section: each rule's exact message, and what a valid
section holds (an origin replicas agree on, peers, how to authenticate to them)."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import pytest

from exporter.config import ConfigError, parse_config
from exporter.config.load import redacted
from tests.configs import API, parsed, targets

ORIGIN = {"origin": "2025-01-01T00:00:00Z"}


def problems(base_dir: str = ".", **sections: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"api": dict(API), "targets": targets(), **sections}, {}, base_dir)
    return caught.value.problems


@pytest.mark.parametrize(("origin", "seconds"), [
    ("2025-01-01T00:00:00Z", 1735689600),
    (" 2025-01-01T08:00:00+08:00\n", 1735689600),
    (datetime.fromisoformat("2025-01-01T00:00:01+00:00"), 1735689601),
], ids=["utc", "offset-and-spaces", "yaml-timestamp"])
def test_an_origin_is_whole_unix_seconds(origin: object, seconds: int) -> None:
    assert parsed(accounting={"origin": origin}).accounting.origin == seconds


@pytest.mark.parametrize(("origin", "message"), [
    ("2025-01-01T00:00:00.5Z", "accounting.origin: must be whole seconds"),
    (datetime(2025, 1, 1), "accounting.origin: needs an offset (Z or +08:00): without one the"
                           " instant depends on the host's time zone, and replicas must agree"
                           " on it"),
], ids=["fraction", "no-offset"])
def test_an_origin_that_is_not_one_instant_in_whole_seconds_is_refused(
        origin: object, message: str) -> None:
    assert problems(accounting={"origin": origin}) == [message]


def test_more_than_sixteen_peers_are_refused_and_sixteen_are_not() -> None:
    sixteen = [f"https://replica-{i}:9866" for i in range(16)]
    assert parsed(accounting=ORIGIN, ha={"peers": sixteen}).ha.peers == tuple(sixteen)
    assert problems(accounting=ORIGIN, ha={"peers": [*sixteen, "https://one-more"]}) == [
        "ha.peers: at most 16 peers, got 17"]


@pytest.mark.parametrize(("ha", "message"), [
    ({"peers": ["https://a:9866", "https://b:9866", "https://a:9866"]},
     "ha.peers: lists a URL twice"),
    ({"peers": ["https://a:9866", "https://"]},
     'ha.peers[1]: expected an http:// or https:// URL, got "https://"'),
    ({"peers": ["https://a:9866", "https://u@b:9866"]},
     "ha.peers[1]: must not hold credentials; set ha.username and ha.password (or"
     " ha.password_file)"),
    ({"peers": ["https://:secret@b:9866"]},
     "ha.peers[0]: must not hold credentials; set ha.username and ha.password (or"
     " ha.password_file)"),
    ({"username": "u", "password": "p", "password_file": "pw"},
     "ha.password_file: conflicts with ha.password; set only one of them"),
    ({"ca_file": "no-such-ca.pem"}, "ha.ca_file: no such file: ./no-such-ca.pem"),
    ({"peers": ["https://a:9866", "http://b:9866"], "username": "u", "password": "p"},
     "ha.username: would be sent in clear to http://b:9866: use https:// peer URLs (with"
     " ha.ca_file), or set ha.insecure_http_auth: true on a network you trust"),
], ids=["twice", "no-host", "username", "password", "both-passwords", "no-ca-file", "in-clear"])
def test_bad_ha_is_one_exact_problem(ha: dict[str, object], message: str) -> None:
    assert problems(accounting=ORIGIN, ha=ha) == [message]


def test_basic_auth_to_http_peers_loads_when_the_operator_says_so() -> None:
    config = parsed(accounting=ORIGIN, ha={"peers": ["http://b:9866"], "username": "u",
                                           "password": "p", "insecure_http_auth": True})
    ha = config.ha
    assert (ha.peers, ha.username, ha.password, ha.insecure_http_auth) == (
        ("http://b:9866",), "u", "p", True)
    # the status page's effective config says the password goes in clear
    assert redacted(config)["ha"] == {"peers": ["http://b:9866"], "username": "u",
                                      "password": "<secret>", "ca_file": None,
                                      "timeout": "10s", "insecure_http_auth": True}


def test_a_username_alone_to_https_peers_loads() -> None:
    ha = parsed(accounting=ORIGIN, ha={"peers": ["https://b:9866"], "username": "u"}).ha
    assert (ha.username, ha.password) == ("u", "")


def test_the_ca_file_and_password_file_resolve_against_the_configs_directory(
        tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here\n")
    (tmp_path / "pw").write_text("  s3cret \n")
    config = parse_config({"api": dict(API), "targets": targets(), "accounting": ORIGIN,
                           "ha": {"peers": ["https://b:9866"], "username": "u",
                                  "password_file": "pw", "ca_file": "ca.pem"}}, {},
                          str(tmp_path))
    assert (config.ha.ca_file, config.ha.password) == (str(tmp_path / "ca.pem"), "s3cret")


@pytest.mark.parametrize(("content", "why"), [
    (b" \n", "{path} is empty"),
    (b"\xff\xfe", "cannot read {path}: not valid UTF-8 text"),
], ids=["blank", "not-utf8"])
def test_a_password_file_that_holds_no_password_is_named_not_shown(
        tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "pw").write_bytes(content)
    assert problems(str(tmp_path), accounting=ORIGIN,
                    ha={"peers": ["https://b:9866"], "username": "u", "password_file": "pw"}
                    ) == [f"ha.password_file: {why.format(path=tmp_path / 'pw')}"]


def test_a_password_file_that_is_a_directory_says_why(tmp_path: Path) -> None:
    (tmp_path / "pw").mkdir()
    [problem] = problems(str(tmp_path), accounting=ORIGIN,
                         ha={"username": "u", "password_file": "pw"})
    assert problem.startswith(f"ha.password_file: cannot read {tmp_path / 'pw'}: ")
    assert not problem.endswith(": ") and "None" not in problem


def test_unknown_keys_are_named_with_their_section() -> None:
    assert problems(accounting={**ORIGIN, "colour": 1}, ha={"colour": 2}) == [
        "accounting.colour: unknown key (expected one of: origin)",
        "ha.colour: unknown key (expected one of: peers, username, password, password_file,"
        " ca_file, timeout, insecure_http_auth)"]


@pytest.mark.parametrize(("accounting", "state", "warned"), [
    (ORIGIN, {"max_backfill": "2h"}, True), ({}, {"max_backfill": "2h"}, False),
    (ORIGIN, {"path": "s.json"}, False), (ORIGIN, None, False),
], ids=["both", "no-origin", "no-backfill", "no-state"])
def test_max_backfill_is_said_to_do_nothing_only_beside_an_origin(
        accounting: dict[str, object], state: dict[str, object] | None, warned: bool) -> None:
    warnings: list[str] = []
    parse_config({"api": dict(API), "targets": targets(), "accounting": accounting,
                  "state": state}, {}, "/", on_warning=warnings.append)
    assert warnings == (["state.max_backfill: has no effect with accounting.origin: a restart "
                         "catches up from the origin however long it was down; remove "
                         "state.max_backfill"] if warned else [])


class _NoOffset(tzinfo):
    """A zone that knows no offset: the instant would still depend on the host."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_a_zone_without_an_offset_is_no_offset() -> None:
    assert problems(accounting={"origin": datetime(2025, 1, 1, tzinfo=_NoOffset())}) == [
        "accounting.origin: needs an offset (Z or +08:00): without one the instant depends on"
        " the host's time zone, and replicas must agree on it"]
