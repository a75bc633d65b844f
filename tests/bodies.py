"""An HTTP answer's body that stalls part-way, for tests of readers that hold a slot while a
body streams in."""

from __future__ import annotations

import io
import threading
from typing import Any


class StalledBody(io.RawIOBase):
    """``data`` streamed in 64 KiB reads; past ``after`` bytes each read signals ``held`` and
    waits (at most ``wait`` seconds) for ``release`` before it goes on."""

    def __init__(self, data: bytes, after: int, held: threading.Semaphore,
                 release: threading.Event, wait: float) -> None:
        super().__init__()
        self.data, self.after, self.held, self.release, self.wait = (data, after, held, release,
                                                                      wait)
        self.sent = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.sent >= len(self.data):
            return 0
        if self.sent > self.after:
            self.held.release()
            self.release.wait(self.wait)
        size = min(len(buffer), len(self.data) - self.sent, 1 << 16)
        buffer[:size] = self.data[self.sent:self.sent + size]
        self.sent += size
        return size
