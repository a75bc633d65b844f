"""ApiClient at the HTTP boundary: signing, retries, backoff, deadlines, rate limiting."""

from __future__ import annotations

import email.utils
import json
import logging
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import responses

from exporter.api.client import BACKOFF_BASE, BACKOFF_CAP, MIN_ATTEMPT_SECONDS, ApiClient
from exporter.api.clock import ApiClock
from exporter.api.errors import ApiError
from exporter.api.keys import KeyClient
from exporter.api.ratelimit import RateLimiter
from exporter.api.transport import pooled_session
from exporter.config import ApiConfig, Target
from exporter.core.clock import FakeClock
from exporter.core.usage import Totals

ENDPOINT = "https://api.example.test/"
URL = ENDPOINT + "?Action=GetUMInferTokenUsage"
PRIVATE = "private-key-do-not-leak"
API = ApiConfig(endpoint=ENDPOINT, public_key="pub", private_key=PRIVATE, timeout=30.0)
TARGET = Target(key="uminferapikey-1", model="deepseek-ai/DeepSeek-V3", project="org-1")
START, END = 1_700_000_000, 1_700_003_599
DATA = {"InTotal": 10, "OutTotal": 5, "Total": 15, "RequestTotal": 2, "ImageGenerationNum": 0}
OK = {"RetCode": 0, "Data": DATA}
EXPECTED = Totals(input_tokens=10, output_tokens=5, tokens=15, requests=2)


class Recorder:
    """A CallObserver that keeps every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []

    def observe_call(self, outcome: str, retcode: str, seconds: float) -> None:
        self.events.append((outcome, retcode, seconds))


class SleepLog(FakeClock):
    """A FakeClock that also remembers each sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds)


class Rig:
    """A client wired to fakes, plus the fakes for assertions."""

    def __init__(self, rsps: responses.RequestsMock, seed: int = 7, rate: float = 0) -> None:
        self.rsps = rsps
        self.clock = SleepLog()
        self.observer = Recorder()
        self.limiter = RateLimiter(rate=rate, burst=5, clock=self.clock)
        self.session = requests.Session()
        self.client = ApiClient(API, self.session, self.clock, random.Random(seed),
                                  self.limiter, self.observer)

    def reply(self, body: object = OK, status: int = 200, **headers: str) -> None:
        self.rsps.add(responses.POST, URL, json=body, status=status, headers=headers)

    def get(self, deadline: float = 120.0, target: Target = TARGET) -> Totals:
        return self.client.get_usage(target, START, END, deadline).totals

    def form(self, call: int = 0) -> dict[str, str]:
        body = self.rsps.calls[call].request.body
        assert isinstance(body, str)
        return dict(parse_qsl(body, keep_blank_values=True))


@pytest.fixture
def rig() -> Iterator[Rig]:
    with responses.RequestsMock() as rsps:
        built = Rig(rsps)
        yield built
        built.client.close()


def test_success_returns_parsed_totals(rig: Rig) -> None:
    rig.reply()
    assert rig.get() == EXPECTED
    assert rig.observer.events == [("success", "0", 0.0)]


def test_form_is_signed_and_complete(rig: Rig) -> None:
    rig.reply()
    rig.get()
    # The whole form, written out; the signature is the SHA-1 of the sorted name+value pairs
    # plus the private key, computed once with sha1sum (and the vendor SDK agrees):
    # printf %s "ActionGetUMInferTokenUsageEndTime1700003599KeyIduminferapikey-1Model\
    # deepseek-ai/DeepSeek-V3ProjectIdorg-1PublicKeypubStartTime1700000000\
    # private-key-do-not-leak" | sha1sum
    assert rig.form() == {
        "Action": "GetUMInferTokenUsage", "PublicKey": "pub", "ProjectId": "org-1",
        "KeyId": "uminferapikey-1", "Model": "deepseek-ai/DeepSeek-V3",
        "StartTime": "1700000000", "EndTime": "1700003599",
        "Signature": "067569c4c750c463c74d3b48f00b5b039b3a6b1d",
    }
    request = rig.rsps.calls[0].request
    assert request.url == URL
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_blank_project_is_omitted(rig: Rig) -> None:
    rig.reply()
    rig.get(target=Target(key="k", model="m"))
    assert "ProjectId" not in rig.form()


def test_attempt_timeout_is_capped_by_deadline(rig: Rig) -> None:
    rig.reply()
    rig.get(deadline=12.5)
    assert rig.rsps.calls[0].request.req_kwargs["timeout"] == 12.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("span", "why"), [((END, START), "reversed"),
                      ((START, START + 31 * 3600), "longer than the longest day")]
)
def test_bad_window_is_a_programming_error(rig: Rig, span: tuple[int, int], why: str) -> None:
    with pytest.raises(ValueError, match="need start <= end"):
        rig.client.get_usage(TARGET, *span, 100.0)
    assert len(rig.rsps.calls) == 0, why


TRANSIENT: list[tuple[str, dict[str, Any], str, str]] = [
    ("connection", {"body": requests.ConnectionError("boom")}, "network", "none"),
    ("read timeout", {"body": requests.ReadTimeout("slow")}, "timeout", "none"),
    ("http 429", {"status": 429, "json": {}}, "http", "none"),
    ("http 500", {"status": 500, "json": {}}, "http", "none"),
    ("http 502", {"status": 502, "body": "<html>bad gateway</html>"}, "http", "none"),
    ("http 503", {"status": 503, "json": {}}, "http", "none"),
    ("http 504", {"status": 504, "json": {}}, "http", "none"),
    ("retcode 110", {"json": {"RetCode": 110}}, "retcode", "110"),
    ("retcode 130", {"json": {"RetCode": "130"}}, "retcode", "130"),
    ("retcode 150", {"json": {"RetCode": 150}}, "retcode", "150"),
    ("retcode 153", {"json": {"RetCode": 153}}, "retcode", "153"),
    ("retcode 2001", {"json": {"RetCode": 2001}}, "retcode", "2001"),
    ("not json", {"body": "<html>oops</html>"}, "invalid_response", "none"),
    ("garbage count", {"json": {"RetCode": 0, "Data": {"Total": -4}}}, "invalid_response", "none"),
]


@pytest.mark.parametrize(("name", "first", "outcome", "label"), TRANSIENT,
                         ids=[t[0] for t in TRANSIENT])
def test_transient_failure_is_retried_then_succeeds(
    rig: Rig, name: str, first: dict[str, Any], outcome: str, label: str
) -> None:
    rig.rsps.add(responses.POST, URL, **first)
    rig.reply()
    assert rig.get() == EXPECTED, name
    assert len(rig.rsps.calls) == 2
    assert [e[:2] for e in rig.observer.events] == [(outcome, label), ("success", "0")]
    assert len(rig.clock.sleeps) == 1


PERMANENT = [160, 161, 170, 171, 172, 174, 220, 230, 292, 294, 299, 1999]


@pytest.mark.parametrize("code", PERMANENT)
def test_permanent_retcode_fails_after_exactly_one_call(rig: Rig, code: int) -> None:
    rig.reply({"RetCode": code, "Message": "denied"})
    with pytest.raises(ApiError) as info:
        rig.get()
    assert len(rig.rsps.calls) == 1
    err = info.value
    assert (err.category, err.retcode, err.transient) == ("retcode", code, False)
    assert f"RetCode {code}" in str(err)
    assert "denied" in str(err)
    assert rig.clock.monotonic() == 0


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_permanent_http_status_not_retried(rig: Rig, status: int) -> None:
    rig.reply({}, status=status)
    with pytest.raises(ApiError) as info:
        rig.get()
    assert len(rig.rsps.calls) == 1
    assert (info.value.category, info.value.http_status) == ("http", status)


def test_161_is_reported_clearly(rig: Rig) -> None:
    rig.reply({"RetCode": 161, "Message": "Action not exist"})
    with pytest.raises(ApiError, match="does not serve GetUMInferTokenUsage"):
        rig.get()


def test_161_names_the_action_that_was_refused(rig: Rig) -> None:
    rig.rsps.add(responses.POST, ENDPOINT + "?Action=ListUMInferAPIKey",
                 json={"RetCode": 161, "Message": "Action not exist"})
    with pytest.raises(ApiError) as info:
        KeyClient(rig.client).list_keys("org", deadline=120.0)
    assert str(info.value) == ("RetCode 161 (this cloud does not serve ListUMInferAPIKey): "
                               "Action not exist")


def test_secrets_never_reach_the_message(rig: Rig) -> None:
    rig.reply({"RetCode": 171, "Message": f"expected key {PRIVATE}"})
    with pytest.raises(ApiError) as info:
        rig.get()
    sent = rig.form()["Signature"]
    for text in (str(info.value), info.value.message, repr(info.value.args)):
        assert PRIVATE not in text
        assert sent not in text
        assert "Signature" not in text


def test_network_error_message_names_host_not_url(rig: Rig) -> None:
    rig.rsps.add(responses.POST, URL, body=requests.ConnectionError(f"failed for {URL}&x=1"))
    with pytest.raises(ApiError) as info:
        rig.get(deadline=1.0)
    assert "api.example.test" in info.value.message
    assert "Action=" not in info.value.message


def test_deadline_bounds_retries_in_fake_time(rig: Rig) -> None:
    spent: list[float] = []

    def slow_failure(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        # Each call takes 2 s, or the whole per-attempt timeout if that is shorter.
        spent.append(min(2.0, request.req_kwargs["timeout"]))  # type: ignore[attr-defined]
        rig.clock.advance(spent[-1])
        return 503, {}, "{}"

    rig.rsps.add_callback(responses.POST, URL, callback=slow_failure)
    with pytest.raises(ApiError) as info:
        rig.get(deadline=45.0)
    assert info.value.http_status == 503
    assert rig.clock.monotonic() <= 45.0
    assert len(rig.rsps.calls) > 3
    assert [seconds for _, _, seconds in rig.observer.events] == pytest.approx(spent)


def test_backoff_is_full_jitter_from_the_given_rng() -> None:
    sleeps = []
    for seed in (1, 1, 2):
        with responses.RequestsMock() as rsps:
            rig = Rig(rsps, seed=seed)
            for _ in range(6):
                rig.reply({"RetCode": 150})
            rig.reply()
            rig.get(deadline=1000.0)
            sleeps.append(rig.clock.sleeps)
            rig.client.close()
    assert sleeps[0] == sleeps[1]
    assert sleeps[0] != sleeps[2]
    for run in sleeps:
        assert len(run) == 6
        assert all(0 <= s <= min(BACKOFF_CAP, BACKOFF_BASE * 2**i) for i, s in enumerate(run))


class Ceiling(random.Random):
    """An rng whose uniform() always draws the top of the range, exposing the ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_ceiling_doubles_up_to_the_cap(rig: Rig) -> None:
    client = ApiClient(API, rig.session, rig.clock, Ceiling(), rig.limiter, rig.observer)
    for _ in range(8):
        rig.reply({"RetCode": 2005})
    rig.reply()
    client.get_usage(TARGET, START, END, 10_000.0)
    assert rig.clock.sleeps == [0.5, 1, 2, 4, 8, 16, BACKOFF_CAP, BACKOFF_CAP]


class Floor(random.Random):
    """An rng whose uniform() always draws the bottom of the range: no backoff pause at all."""

    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.mark.parametrize(("left", "calls"), [(0.4, 1), (0.5, 2), (0.6, 2)])
def test_no_retry_with_less_than_the_minimum_attempt_time_left(
        rig: Rig, left: float, calls: int) -> None:
    assert MIN_ATTEMPT_SECONDS == 0.5
    deadline, answered = 10.0, []

    def slow_busy(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        answered.append(request)
        if len(answered) > 1:
            return 200, {}, json.dumps(OK)
        rig.clock.advance(deadline - left)  # the first answer, busy, leaves ``left`` seconds
        return 200, {}, json.dumps({"RetCode": 150})

    rig.rsps.add_callback(responses.POST, URL, callback=slow_busy)
    client = ApiClient(API, rig.session, rig.clock, Floor(), rig.limiter, rig.observer)
    if calls == 1:  # a retry could not finish: the real failure, at once
        with pytest.raises(ApiError, match="RetCode 150"):
            client.get_usage(TARGET, START, END, deadline)
    else:
        assert client.get_usage(TARGET, START, END, deadline).totals == EXPECTED
    assert len(rig.rsps.calls) == calls


def test_throttled_backoff_starts_higher(rig: Rig) -> None:
    client = ApiClient(API, rig.session, rig.clock, Ceiling(), rig.limiter, rig.observer)
    rig.reply({"RetCode": 153})
    rig.reply({"RetCode": 153})
    rig.reply()
    client.get_usage(TARGET, START, END, 10_000.0)
    assert rig.clock.sleeps[0] > BACKOFF_BASE
    assert rig.clock.sleeps[1] == 2 * rig.clock.sleeps[0]


@pytest.mark.parametrize("header", ["7", "Tue, 14 Nov 2023 22:13:27 GMT"])
def test_429_honours_retry_after(rig: Rig, header: str) -> None:
    # FakeClock wall time starts at 1_700_000_000 = Tue, 14 Nov 2023 22:13:20 GMT.
    rig.reply({}, status=429, **{"Retry-After": header})
    rig.reply()
    assert rig.get() == EXPECTED
    assert rig.clock.sleeps[0] >= 7.0


def test_retry_after_beyond_deadline_gives_up_at_once(rig: Rig) -> None:
    rig.reply({}, status=429, **{"Retry-After": "3600"})
    with pytest.raises(ApiError) as info:
        rig.get(deadline=60.0)
    assert info.value.throttled
    assert len(rig.rsps.calls) == 1
    assert rig.clock.monotonic() == 0


@pytest.mark.parametrize(("reply", "status"), [({"RetCode": 153}, 200), ({}, 429)])
def test_throttling_slows_the_shared_limiter(reply: object, status: int) -> None:
    with responses.RequestsMock() as rsps:
        rig = Rig(rsps, rate=10)
        rig.reply(reply, status=status)
        rig.reply()
        rig.get()
        rig.client.close()
    assert rig.limiter.current_rate < 10


def test_success_lets_the_limiter_recover(rig: Rig) -> None:
    limiter = RateLimiter(rate=10, burst=5, clock=rig.clock)
    client = ApiClient(API, rig.session, rig.clock, random.Random(0), limiter, rig.observer)
    limiter.throttled()
    throttled_rate = limiter.current_rate
    rig.reply()
    client.get_usage(TARGET, START, END, 100.0)
    assert throttled_rate < limiter.current_rate <= 10


def test_every_attempt_waits_for_a_token() -> None:
    with responses.RequestsMock() as rsps:
        rig = Rig(rsps, rate=1)  # burst 5, so the sixth call must wait a second
        for _ in range(6):
            rig.reply()
            rig.get(deadline=1000.0)
        rig.client.close()
    assert rig.clock.monotonic() == pytest.approx(1.0)


def test_limiter_exhausted_before_deadline_raises_timeout() -> None:
    with responses.RequestsMock() as rsps:
        rig = Rig(rsps, rate=0.01)
        for _ in range(5):
            rig.reply()
            rig.get(deadline=10.0)
        with pytest.raises(ApiError) as info:
            rig.get(deadline=10.0)
        assert len(rsps.calls) == 5
        rig.client.close()
    assert info.value.category == "timeout"


def test_failure_then_limiter_exhaustion_raises_the_real_failure() -> None:
    with responses.RequestsMock() as rsps:
        rig = Rig(rsps, rate=0.01)
        for _ in range(4):
            rig.reply()
            rig.get(deadline=1000.0)
        rig.reply({"RetCode": 150, "Message": "busy"})
        with pytest.raises(ApiError) as info:
            rig.get(deadline=20.0)
        rig.client.close()
    assert info.value.retcode == 150


def test_string_spelled_numbers_over_the_wire(rig: Rig) -> None:
    rig.rsps.add(responses.POST, URL, body=json.dumps({"RetCode": "0", "Data": {"Total": "15"}}))
    assert rig.get().tokens == 15


@pytest.mark.parametrize(("environ", "endpoint", "proxies"), [
    ({}, "https://api.example.com/", {}),
    ({"HTTPS_PROXY": "http://proxy.local:3128"}, "https://api.example.com/",
     {"https": "http://proxy.local:3128"}),
    ({"https_proxy": "http://p:1", "NO_PROXY": "example.com"}, "https://api.example.com/", {}),
    ({"ALL_PROXY": "socks5://s:1"}, "http://api.example.com/", {"all": "socks5://s:1"}),
])
def test_pooled_session_reads_proxies_once_from_the_given_environment(
        environ: dict[str, str], endpoint: str, proxies: dict[str, str]) -> None:
    session = pooled_session(endpoint, 4, environ)
    assert session.proxies == proxies
    assert session.trust_env is False  # requests must not re-read the environment per call
    assert session.verify is True
    session.close()


def test_pooled_session_honours_a_ca_bundle_variable() -> None:
    session = pooled_session("https://api.example.com/", 1, {"REQUESTS_CA_BUNDLE": "/ca.pem"})
    assert session.verify == "/ca.pem"
    session.close()


def test_only_the_apis_own_answers_tell_its_time() -> None:
    """A 502 page from a gateway in front of the API (a node with its own clock) is no sample
    of the API's clock; a 200 answer is, whatever its RetCode."""
    with responses.RequestsMock() as rsps:
        clock = FakeClock(START)
        api_clock = ApiClock(clock)
        client = ApiClient(API, requests.Session(), clock, random.Random(0),
                           RateLimiter(rate=0, burst=5, clock=clock), Recorder(), api_clock)
        rsps.add(responses.POST, URL, body="<html>bad gateway</html>", status=502,
                 headers={"Date": email.utils.formatdate(START + 2 * 86400, usegmt=True)})
        rsps.add(responses.POST, URL, json={"RetCode": 153}, status=200,
                 headers={"Date": email.utils.formatdate(START, usegmt=True)})
        with pytest.raises(ApiError):
            client.get_usage(TARGET, START, END, clock.monotonic() + 0.1)
        assert not api_clock.known
        with pytest.raises(ApiError):
            client.get_usage(TARGET, START, END, clock.monotonic() + 0.1)
        assert api_clock.known and api_clock.now() == START


# --- learning the API's clock before any answer has told it ---

class ClockRig:
    """A client with an API clock, and a plain GET of the endpoint mocked."""

    def __init__(self, rsps: responses.RequestsMock, rate: float = 0, burst: int = 5) -> None:
        self.rsps = rsps
        self.clock = FakeClock(START)
        self.api_clock = ApiClock(self.clock)
        self.limiter = RateLimiter(rate=rate, burst=burst, clock=self.clock)
        self.client = ApiClient(API, requests.Session(), self.clock, random.Random(0),
                                self.limiter, Recorder(), self.api_clock)

    def sync(self, deadline: float = 60.0) -> str | None:
        return self.client.sync_clock(self.clock.monotonic() + deadline)


def test_a_plain_get_teaches_the_apis_clock_from_any_answer() -> None:
    with responses.RequestsMock() as rsps:
        rig = ClockRig(rsps)
        rsps.add(responses.GET, ENDPOINT, status=302, headers={
            "Location": "https://elsewhere.example.test/",  # not followed
            "Date": email.utils.formatdate(START + 3600, usegmt=True)})
        assert rig.sync() is None
        assert rig.api_clock.known and rig.api_clock.now() == START + 3600
        assert len(rsps.calls) == 1
        assert rig.sync() is None  # known now: nothing more is sent
        assert len(rsps.calls) == 1


def test_without_an_api_clock_nothing_is_sent() -> None:
    with responses.RequestsMock() as rsps:
        clock = FakeClock(START)
        client = ApiClient(API, requests.Session(), clock, random.Random(0),
                           RateLimiter(rate=0, burst=1, clock=clock), Recorder())
        assert client.sync_clock(clock.monotonic() + 60) is None
        assert len(rsps.calls) == 0


@pytest.mark.parametrize("left", [0.0, -1.0])
def test_no_time_left_sends_nothing(left: float) -> None:
    with responses.RequestsMock() as rsps:
        rig = ClockRig(rsps)
        assert rig.sync(left) is None
        assert len(rsps.calls) == 0 and not rig.api_clock.known


def test_no_token_before_the_deadline_sends_nothing() -> None:
    with responses.RequestsMock() as rsps:
        rig = ClockRig(rsps, rate=1, burst=1)
        assert rig.limiter.acquire(rig.clock.monotonic() + 1)  # the one token is gone
        assert rig.sync(0.5) is None
        assert len(rsps.calls) == 0


@pytest.mark.parametrize(("left", "said"), [(60.0, "30.0"), (2.5, "2.5")])
def test_a_get_that_times_out_says_how_long_it_waited(left: float, said: str) -> None:
    with responses.RequestsMock() as rsps:
        rig = ClockRig(rsps)
        rsps.add(responses.GET, ENDPOINT, body=requests.ConnectTimeout("slow"))
        assert rig.sync(left) == f"no answer from api.example.test within {said}s"


def test_a_get_that_cannot_connect_says_why() -> None:
    refused = requests.ConnectionError("wrapper")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    with responses.RequestsMock() as rsps:
        rig = ClockRig(rsps)
        rsps.add(responses.GET, ENDPOINT, body=refused)
        assert rig.sync() == "cannot reach api.example.test: connection refused"
        assert not rig.api_clock.known


def test_the_plain_get_streams_within_the_time_left_from_a_running_clock() -> None:
    with responses.RequestsMock() as rsps:
        rig = ClockRig(rsps)
        rig.clock.advance(1000)  # a monotonic clock that has run
        rsps.add(responses.GET, ENDPOINT, status=404,
                 headers={"Date": email.utils.formatdate(START, usegmt=True)})
        assert rig.sync(0.75) is None  # under a second left is still time to ask
        kwargs = rsps.calls[0].request.req_kwargs  # type: ignore[attr-defined]
        assert (kwargs["timeout"], kwargs["stream"]) == (0.75, True)
        assert rig.api_clock.known


def test_a_failed_plain_get_is_logged_at_debug_naming_host_and_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    refused = requests.ConnectionError("wrapper")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    with responses.RequestsMock() as rsps:
        rig = ClockRig(rsps)
        rsps.add(responses.GET, ENDPOINT, body=refused)
        with caplog.at_level(logging.DEBUG, logger="exporter.api.client"):
            rig.sync()
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("exporter.api.client", "API clock not learned from api.example.test: Connection refused")]


def test_a_retry_is_logged_at_debug_with_action_target_pause_and_error(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.reply({"RetCode": 150, "Message": "busy"})
    rig.reply()
    with caplog.at_level(logging.DEBUG, logger="exporter.api.client"):
        rig.get()
    [pause] = rig.clock.sleeps
    assert [(r.name, r.getMessage()) for r in caplog.records] == [(
        "exporter.api.client", f"retrying GetUMInferTokenUsage {TARGET.ident} in {pause:.2f}s "
        "after: RetCode 150 (service unavailable): busy")]


@pytest.mark.parametrize("left", [0.0, -5.0])
def test_no_time_left_is_a_transient_timeout_before_any_call(rig: Rig, left: float) -> None:
    rig.clock.advance(100)
    with pytest.raises(ApiError) as info:
        rig.get(deadline=rig.clock.monotonic() + left)
    assert str(info.value) == "deadline reached before the first call"
    assert (info.value.category, info.value.transient) == ("timeout", True)
    assert len(rig.rsps.calls) == 0


def test_a_running_clock_caps_the_attempt_and_times_it(rig: Rig) -> None:
    rig.clock.advance(100)
    rig.reply()
    rig.get(deadline=rig.clock.monotonic() + 12.5)
    assert rig.rsps.calls[0].request.req_kwargs["timeout"] == 12.5  # type: ignore[attr-defined]
    assert rig.observer.events == [("success", "0", 0.0)]


def test_a_one_second_window_is_read(rig: Rig) -> None:
    rig.reply()
    assert rig.client.get_usage(TARGET, START, START, 60.0).totals == EXPECTED
    assert (rig.form()["StartTime"], rig.form()["EndTime"]) == (str(START), str(START))


def test_errors_name_the_apis_host(rig: Rig) -> None:
    rig.rsps.add(responses.POST, URL, body="<html>", status=200)
    with pytest.raises(ApiError, match=r"^invalid response: body from api\.example\.test is not"):
        rig.get()
    rig.rsps.add(responses.POST, URL, body="", status=404)
    with pytest.raises(ApiError, match=r"^HTTP 404 Not Found from api\.example\.test$"):
        rig.get()
