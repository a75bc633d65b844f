"""Which peers a replica asks for their ledgers (polling.peers), with a session double: no
peer is served here (tests/unit/accounting/test_handoff.py serves real ones)."""

from __future__ import annotations

import logging
import socket

import pytest
import requests

from exporter.accounting.handoff import Terms
from exporter.config import HaConfig
from exporter.core.clock import FakeClock
from exporter.core.grid import Grid
from exporter.polling.peers import fetch

T0 = 1_700_000_000 // 86400 * 86400


class Unreachable(requests.Session):
    """Every peer is down; the URLs asked are noted."""

    asked: list[str] = []

    def get(self, url: str | bytes, *args: object, **kwargs: object) -> requests.Response:
        Unreachable.asked.append(str(url))
        raise requests.ConnectionError("refused")


def test_this_hosts_own_name_is_skipped_whatever_its_domain(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # A pod's host name may be fully qualified; the peer URL names it in another domain.
    monkeypatch.setattr(socket, "gethostname", lambda: "Exporter-0.cluster.example")
    Unreachable.asked = []
    ha = HaConfig(peers=("http://exporter-0.peers.svc:9100", "http://exporter-1.peers.svc:9100/"),
                  timeout=5.0)
    with caplog.at_level(logging.WARNING):
        assert fetch(ha, Terms(T0, 600), lambda: T0, FakeClock(), replica="me",
                     grid_of=lambda _: Grid.every(3600), session=Unreachable) is None
    assert Unreachable.asked == ["http://exporter-1.peers.svc:9100/-/ledgers"]
    assert [r.getMessage() for r in caplog.records] == [
        "peer http://exporter-1.peers.svc:9100/ unreachable: ConnectionError: refused"]
