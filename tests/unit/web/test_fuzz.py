"""Property tests: the config and web-config loaders parse or raise ConfigError, nothing else."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, ConfigError, load_config, parse_config
from exporter.web.config import WebConfig, load_web_config

EXAMPLES = 300
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])

# Keys the loaders know, so generated documents get past "unknown key" into the real checks.
CONFIG_KEYS = ("api", "poll", "state", "windows", "targets", "endpoint", "public_key",
               "private_key", "private_key_file", "timeout", "max_concurrency", "rate_limit",
               "interval", "settle", "period", "window_interval", "path", "max_backfill",
               "time_zone",
               "project", "key", "model", "labels", "team")
WEB_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "cert_file",
            "key_file", "client_ca_file", "cert", "key", "client_ca", "client_auth_type",
            "min_version", "max_version", "cipher_suites", "curve_preferences", "headers",
            "http2", "prometheus", "X-Frame-Options", "RequireAndVerifyClientCert", "TLS12")
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.sampled_from(["1s", "10m", "0s", "-1s", "1h30m", "${HOME}", "${NOPE}",
                                     "$${X}", "http://127.0.0.1:9/", "/dev/null", ".", "TLS13",
                                     "$2b$04$" + "a" * 53]))


def documents(keys: tuple[str, ...]) -> st.SearchStrategy[object]:
    """YAML-able values whose mapping keys are mostly ones the loader knows."""
    names = st.one_of(st.sampled_from(keys), st.text(max_size=8))
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=5)), max_leaves=20)


def _through_file(text: str, load: Callable[[str], object]) -> object:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            return load(str(path))
        except ConfigError as error:
            return error


def _well_formed(result: object) -> bool:
    """A refusal must say what is wrong: at least one non-empty line per problem."""
    if not isinstance(result, ConfigError):
        return True
    return bool(result.problems) and all(isinstance(p, str) and p for p in result.problems)


def _config(path: str) -> object:
    return load_config(path, {"HOME": "/root"})


@_SETTINGS
@given(st.text(max_size=300))
def test_config_loader_on_arbitrary_text(text: str) -> None:
    result = _through_file(text, _config)
    assert isinstance(result, Config | ConfigError)
    assert _well_formed(result)


@_SETTINGS
@given(documents(CONFIG_KEYS))
def test_config_loader_on_arbitrary_yaml(document: object) -> None:
    result = _through_file(yaml.safe_dump(document), _config)
    assert isinstance(result, Config | ConfigError)
    assert _well_formed(result)
    try:
        direct: object = parse_config(document, {}, "/nonexistent")
    except ConfigError as error:
        direct = error
    assert isinstance(direct, Config | ConfigError)


@_SETTINGS
@given(st.text(max_size=300))
def test_web_config_loader_on_arbitrary_text(text: str) -> None:
    result = _through_file(text, load_web_config)
    assert isinstance(result, WebConfig | ConfigError)
    assert _well_formed(result)


@_SETTINGS
@given(documents(WEB_KEYS))
def test_web_config_loader_on_arbitrary_yaml(document: object) -> None:
    result = _through_file(yaml.safe_dump(document), load_web_config)
    assert isinstance(result, WebConfig | ConfigError)
    assert _well_formed(result)


VALID_CONFIG: dict[str, object] = {
    "api": {"endpoint": "http://127.0.0.1:9/", "public_key": "p", "private_key": "secret-key-1234",
            "timeout": "2s", "max_concurrency": 4, "rate_limit": 5},
    "poll": {"interval": "1s", "settle": "20s"},
    "state": {"path": "state.json", "max_backfill": "1h"},
    "windows": ["1h", "24h"],
    "targets": [{"project": "p", "key": "k", "model": "m", "labels": {"team": "t"}}],
}
LEAVES = [(section, name) for section, body in VALID_CONFIG.items() if isinstance(body, dict)
          for name in body] + [("windows", None), ("targets", None)]


@_SETTINGS
@given(st.sampled_from(LEAVES), documents(CONFIG_KEYS))
def test_config_loader_on_one_mutated_field(leaf: tuple[str, str | None], value: object) -> None:
    """One field of a valid config replaced: reaches the deep checks the random documents miss."""
    document = yaml.safe_load(yaml.safe_dump(VALID_CONFIG))
    section, name = leaf
    if name is None:
        document[section] = value
    else:
        document[section][name] = value
    result = _through_file(yaml.safe_dump(document), _config)
    assert isinstance(result, Config | ConfigError)
    assert _well_formed(result)
    assert "secret-key-1234" not in str(result)
