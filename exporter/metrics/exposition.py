"""Renders a Snapshot to the Prometheus text format once per cycle, plain and gzip."""

from __future__ import annotations

import gzip
import io
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.config import Target
from exporter.metrics import genai
from exporter.metrics.families import FAMILIES, GLOBAL_FAMILIES, QUANTITIES, Family, escape
from exporter.metrics.held import held
from exporter.metrics.merge import merged
from exporter.metrics.shape import DEFAULT, Shape

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1  # most of the size win for a fraction of the CPU of level 9
_GZIP_WBITS = 31  # zlib's gzip container: a stream any gzip reader (and Prometheus) accepts
BATCH = 500  # targets turned into text at a time


def target_labels(target: Target, drop: frozenset[str] = frozenset()) -> str:
    """The label pairs every per-target series carries, without braces (less ``drop``)."""
    pairs = [("project_id", target.project), ("key_id", target.key), ("model", target.model)]
    pairs.extend(target.labels)
    return ",".join(f'{name}="{escape(value)}"' for name, value in pairs if name not in drop)


def render(snapshot: Snapshot, shape: Shape = DEFAULT) -> bytes:
    """The text exposition of every per-target family in ``snapshot``."""
    return render_both(snapshot, shape).body


SERIES = "uminfer_exporter_series"
_SERIES_HEAD = (f"# HELP {SERIES} Number of series each metric family of the published "
                "exposition has (the exporter's own metrics not included).\n"
                f"# TYPE {SERIES} gauge\n")


@dataclass(frozen=True)
class Rendered:
    """An exposition, its gzip form, and how many series each family in it has."""

    body: bytes
    gzipped: bytes
    series: tuple[tuple[str, int], ...]


def render_both(snapshot: Snapshot, shape: Shape = DEFAULT, *, counted: bool = False
                ) -> Rendered:
    """The exposition and its gzip form, made in one pass, and each family's series count
    (``counted``: also written into it as ``uminfer_exporter_series``)."""
    out = io.BytesIO()
    gzipped, series = _render(snapshot, shape, out.write, counted=counted)
    return Rendered(out.getvalue(), gzipped, series)


def render_gzip(snapshot: Snapshot, shape: Shape = DEFAULT, *, counted: bool = False) -> bytes:
    """The exposition's gzip form alone: the plain text is never held whole."""
    return _render(snapshot, shape, lambda _chunk: 0, counted=counted)[0]


def _render(snapshot: Snapshot, shape: Shape, plain: Callable[[bytes], object], *,
            counted: bool) -> tuple[bytes, tuple[tuple[str, int], ...]]:
    """The gzip form and each family's series count, each chunk of plain text also handed to
    ``plain`` (``counted``: ``uminfer_exporter_series`` written in too, at no cost per scrape).

    One batch of one family at a time is turned into text and compressed, so the peak is the
    gzip form plus one batch, not every line as a separate str plus the joined str plus its
    encoding (at 10,000 targets that was ~70 MB more).
    """
    labelled = [(t, target_labels(t.target, shape.drop)) for t in snapshot.targets]
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    zipped: list[bytes] = []
    series: list[tuple[str, int]] = []
    for family, batches in _shaped(_texts(snapshot, labelled, shape), shape):
        name = family.name
        head, count = f"# HELP {name} {family.help}\n# TYPE {name} {family.kind}\n", 0
        for lines in batches:
            if lines:  # a family without samples gets no HELP/TYPE either
                chunk = (head + "".join(lines)).encode()
                head, count = "", count + len(lines)
                plain(chunk)
                zipped.append(packer.compress(chunk))
        if count:
            series.append((name, count))
    if counted and series:
        chunk = (_SERIES_HEAD + "".join(f'{SERIES}{{family="{name}"}} {count}\n'
                                        for name, count in series)).encode()
        plain(chunk)
        zipped.append(packer.compress(chunk))
    zipped.append(packer.flush())
    return b"".join(zipped), tuple(series)


_Text = tuple[Family, Iterator[list[str]]]


def _texts(snapshot: Snapshot, labelled: list[tuple[TargetSnapshot, str]], shape: Shape
           ) -> Iterator[_Text]:
    """Each family and its sample lines in batches of BATCH targets (so the text alive at once
    is one batch's, not a family's: 7 failure reasons x 10,000 targets is 14 MB), per-target
    families first, the GenAI names after the native counters when asked for; the process-wide
    ones in one batch, given every target."""
    for i, family in enumerate(FAMILIES):
        if i == len(QUANTITIES) and shape.genai:
            yield genai.FAMILY, _batched(genai.FAMILY, snapshot, labelled, shape)
        yield family, _batched(family, snapshot, labelled, shape)
    for g in GLOBAL_FAMILIES:
        yield g, iter([list(g.samples(g, snapshot, labelled, shape))])


def _batched(family: Family, snapshot: Snapshot, labelled: list[tuple[TargetSnapshot, str]],
             shape: Shape) -> Iterator[list[str]]:
    return (list(family.samples(family, snapshot, labelled[i:i + BATCH], shape))
            for i in range(0, len(labelled), BATCH))


def _shaped(texts: Iterator[_Text], shape: Shape) -> Iterator[_Text]:
    """``texts`` without the families turned off; with labels dropped, each family's series
    merged (the whole family at once: series to merge may lie in different batches)."""
    if shape == DEFAULT:  # the default costs nothing on the render path
        yield from texts
        return
    for family, batches in texts:
        if not shape.shows(family.name):
            continue
        if shape.drop:
            lines = (line for batch in batches for line in batch)
            yield family, iter([merged(family.name, lines, shape.drop)])
        else:
            yield family, batches


@dataclass
class ExpositionCache:
    """The latest rendered body in its gzip form, swapped atomically.

    It is made in :meth:`publish` (the poll thread, once per cycle), so a gzip scrape only
    copies bytes: Prometheus always asks for gzip, and compressing 30 MB on the scrape path
    would cost the first scraper of each cycle ~60 ms at 10,000 targets. The plain text is 20
    times larger (40 MB at 10,000 targets, and twice that while the next one was made): it is
    decompressed by the first scrape of a cycle that does not take gzip, outside the lock, and
    kept for the others until the next body is made (dropped before, so never two at once).
    """

    _plain: bytes | None = None  # the gzip form decompressed, once a scraper asked for it
    _gzipped: bytes = field(default_factory=lambda: gzip.compress(b"", GZIP_LEVEL, mtime=0))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _published: Snapshot = field(default_factory=Snapshot)  # the last one published, for hold
    _shown: Snapshot = field(default_factory=Snapshot)  # what the body shows (the landing page)
    shape: Shape = DEFAULT  # set from the config's ``metrics`` (at start and on each reload)

    def publish(self, snapshot: Snapshot) -> None:
        """Render ``snapshot`` and make it the body served from now on."""
        self._serve(snapshot)
        self._published = snapshot

    def hold(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot``'s health but the counted values last published (state not saved)."""
        self._serve(held(self._published, snapshot))

    def shown(self) -> Snapshot:
        """The snapshot the current body was rendered from."""
        with self._lock:
            return self._shown

    def _serve(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._plain = None
        gzipped = render_gzip(snapshot, self.shape, counted=True)
        with self._lock:
            self._gzipped, self._shown, self._plain = gzipped, snapshot, None

    def body(self, compressed: bool) -> bytes:
        """The current body, gzip-compressed when asked."""
        with self._lock:
            gzipped, plain = self._gzipped, self._plain
        if compressed:
            return gzipped
        if plain is not None:
            return plain
        plain = zlib.decompress(gzipped, _GZIP_WBITS)
        with self._lock:
            if self._gzipped is gzipped:  # still the current body
                self._plain = plain
        return plain
