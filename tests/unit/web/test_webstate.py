"""The web config in force across reloads: staged (validated) first, put in force on commit, and
reported together with the config's own problems."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exporter.config import Config, ConfigError
from exporter.web.config import WebConfig
from exporter.web.state import WebState, loading_both
from tests.configs import parsed

DENY = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
SAME = "http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n"
BAD = "nonsense: 1\n"
BAD_PROBLEM = ("nonsense: unknown key (expected one of: tls_server_config, http_server_config, "
               "basic_auth_users)")


def web_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return str(path)


def test_without_a_file_plain_http_and_reloads_change_nothing() -> None:
    web = WebState(None)
    assert web.path is None
    assert web() == WebConfig()
    web.stage()
    web.commit()
    assert web() == WebConfig()


def test_the_file_is_loaded_at_start(tmp_path: Path) -> None:
    path = web_file(tmp_path, DENY)
    web = WebState(path)
    assert web.path == path
    assert web().headers == (("X-Frame-Options", "deny"),)


def test_a_bad_file_at_start_lists_its_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        WebState(web_file(tmp_path, BAD))
    assert raised.value.problems == [BAD_PROBLEM]


def test_a_staged_config_is_in_force_only_after_commit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = web_file(tmp_path, DENY)
    web = WebState(path)
    Path(path).write_text(SAME)
    web.stage()
    assert web().headers == (("X-Frame-Options", "deny"),)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="exporter.web.state"):
        web.commit()
    assert web().headers == (("X-Frame-Options", "sameorigin"),)
    assert [r.getMessage() for r in caplog.records] == [f"web config {path} reloaded"]


def test_a_commit_without_a_stage_keeps_the_config_and_says_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = web_file(tmp_path, DENY)
    web = WebState(path)
    Path(path).write_text(SAME)
    web.stage()
    web.commit()
    Path(path).write_text(DENY)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="exporter.web.state"):
        web.commit()  # the staged one was taken by the first commit
    assert web().headers == (("X-Frame-Options", "sameorigin"),)
    assert caplog.records == []


def test_a_bad_file_on_reload_keeps_the_one_in_force(tmp_path: Path) -> None:
    path = web_file(tmp_path, DENY)
    web = WebState(path)
    Path(path).write_text(BAD)
    with pytest.raises(ConfigError) as raised:
        web.stage()
    assert raised.value.problems == [BAD_PROBLEM]
    web.commit()
    assert web().headers == (("X-Frame-Options", "deny"),)


def failing(*problems: str) -> Config:
    raise ConfigError(list(problems))


def test_loading_both_returns_the_config_and_stages_the_web_config(tmp_path: Path) -> None:
    path = web_file(tmp_path, DENY)
    web = WebState(path)
    Path(path).write_text(SAME)
    config = parsed()
    assert loading_both(lambda: config, web)() is config
    web.commit()
    assert web().headers == (("X-Frame-Options", "sameorigin"),)


def test_loading_both_reports_both_files_problems_in_order(tmp_path: Path) -> None:
    path = web_file(tmp_path, DENY)
    web = WebState(path)
    Path(path).write_text(BAD)
    with pytest.raises(ConfigError) as raised:
        loading_both(lambda: failing("poll.interval: bad", "api: bad"), web)()
    assert raised.value.problems == ["poll.interval: bad", "api: bad", BAD_PROBLEM]


def test_loading_both_reports_a_bad_web_config_alone(tmp_path: Path) -> None:
    path = web_file(tmp_path, DENY)
    web = WebState(path)
    Path(path).write_text(BAD)
    with pytest.raises(ConfigError) as raised:
        loading_both(parsed, web)()
    assert raised.value.problems == [BAD_PROBLEM]


def test_loading_both_reports_a_bad_config_alone(tmp_path: Path) -> None:
    web = WebState(web_file(tmp_path, DENY))
    with pytest.raises(ConfigError) as raised:
        loading_both(lambda: failing("api: bad"), web)()
    assert raised.value.problems == ["api: bad"]


def test_a_config_error_without_problems_still_fails() -> None:
    with pytest.raises(ConfigError) as raised:
        loading_both(failing, WebState(None))()
    assert raised.value.problems == []


def test_a_reused_config_error_does_not_gather_the_web_problems(tmp_path: Path) -> None:
    """A loader may raise the same error again: each report holds that reload's problems."""
    path = web_file(tmp_path, DENY)
    web = WebState(path)
    Path(path).write_text(BAD)
    error = ConfigError(["api: bad"])

    def load() -> Config:
        raise error

    for _ in range(2):
        with pytest.raises(ConfigError) as raised:
            loading_both(load, web)()
        assert raised.value.problems == ["api: bad", BAD_PROBLEM]
    assert error.problems == ["api: bad"]
