"""The web config in force, reloaded together with the config: validated first, swapped after."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from exporter.config import Config, ConfigError
from exporter.web.config import WebConfig, load_web_config

log = logging.getLogger(__name__)


class WebState:
    """The web config requests are served under; a reload stages a new one, then commits it.

    New connections take the TLS context in force when they arrive, and every request is
    checked against the users in force when it arrives: revoking a user or rotating a
    certificate needs a reload, not a restart.
    """

    def __init__(self, path: str | None) -> None:
        """Load ``path`` (None: plain HTTP, no auth); raise ConfigError with every problem."""
        self.path = path
        self._current = load_web_config(path) if path else WebConfig()
        self._staged: WebConfig | None = None
        self._lock = threading.Lock()

    def __call__(self) -> WebConfig:
        """The web config in force."""
        return self._current

    def stage(self) -> None:
        """Read and validate the file again; raise ConfigError and keep the old one if bad."""
        if self.path is not None:
            staged = load_web_config(self.path)
            with self._lock:
                self._staged = staged

    def commit(self) -> None:
        """Put the staged web config in force (after the config itself was applied)."""
        with self._lock:
            staged, self._staged = self._staged, None
        if staged is not None:
            self._current = staged
            log.info("web config %s reloaded", self.path)


def loading_both(load_config: Callable[[], Config], web: WebState) -> Callable[[], Config]:
    """A config loader that also stages the web config, reporting both files' problems."""

    def load() -> Config:
        problems: list[str] = []
        config: Config | None = None
        try:
            config = load_config()
        except ConfigError as error:
            problems += error.problems
        try:
            web.stage()
        except ConfigError as error:
            problems += error.problems
        if problems or config is None:
            raise ConfigError(problems)
        return config

    return load
