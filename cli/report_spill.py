"""Reading `code`'s output in bounded memory, however long the archive: each record goes to one of
`buckets` files on disk by a hash of its encounter id (pass one), then the buckets are read back one
at a time, each holding every record of its encounters (pass two). Memory holds one bucket, not the
archive; the disk holds a copy of it while the report is written.

A record's encounter id is found without parsing it (the records are JSON objects with a top-level
"encounter_id"); records without one (dead letters, unreadable lines) are handled in pass one.
"""
from __future__ import annotations

import os
import re
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import orjson

PROGRESS_EVERY = 100_000  # lines between progress notes
BUCKET_BYTES = 4 * 1024 * 1024  # input bytes per bucket aimed at: a bucket folded takes ~10x its size
MIN_BUCKETS, MAX_BUCKETS = 16, 512  # at most 512 files open at once (a process may open 1,024)
UNKNOWN_SIZE_BUCKETS = 256  # standard input: ~1 GB before a bucket passes BUCKET_BYTES
WRITE_BUFFER = 32 * 1024

_ENCOUNTER_ID = re.compile(rb'"encounter_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def buckets_for(sizes: Iterable[int | None]) -> int:
    """Buckets for inputs of these sizes (None: not known, e.g. standard input)."""
    sizes = list(sizes)
    if any(s is None for s in sizes):
        return UNKNOWN_SIZE_BUCKETS
    return max(MIN_BUCKETS, min(MAX_BUCKETS, sum(sizes) // BUCKET_BYTES + 1))


@dataclass
class Spilled:
    """What pass one saw: lines, dead letters by category, unreadable lines (the first few by file and
    line), and the bucket files to read back."""
    lines: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    unreadable: int = 0
    unreadable_at: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def note_unreadable(self, where: str) -> None:
        self.unreadable += 1
        if len(self.unreadable_at) < 10:
            self.unreadable_at.append(where)


class Spill:
    """`with Spill(n) as spill:` add each source's lines, then iterate `records()` bucket by bucket."""

    def __init__(self, buckets: int, tmpdir: str | None = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="iv-report-", dir=tmpdir)
        self.seen = Spilled(paths=[os.path.join(self.dir.name, f"{i:03d}") for i in range(buckets)])
        self._files = [open(p, "wb", buffering=WRITE_BUFFER) for p in self.seen.paths]

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        self.dir.cleanup()

    def _close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def add(self, lines: Iterable[bytes], name: str, progress: Callable[[int], None] | None = None) -> None:
        seen, files, n = self.seen, self._files, len(self._files)
        for lineno, raw in enumerate(lines, 1):
            seen.lines += 1
            if progress and seen.lines % PROGRESS_EVERY == 0:
                progress(seen.lines)
            m = _ENCOUNTER_ID.search(raw)
            if m is None:
                self._no_encounter(raw, f"{name}:{lineno}")
                continue
            key = m[1] if b"\\" not in m[1] else _unescaped(m[1])
            # where the line came from, for an unreadable one's note; then the line itself
            files[zlib.crc32(key) % n].write(b"%s:%d\t%s\n" % (name.encode("utf-8", "replace"), lineno, raw.rstrip(b"\r\n")))

    def _no_encounter(self, raw: bytes, where: str) -> None:
        if not raw.strip():
            return
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and rec.get("kind") == "dead_letter":
            self.seen.dead_letters[str(rec.get("category") or "unknown")] += 1
        else:
            self.seen.note_unreadable(where)

    def buckets(self) -> Iterator[list[tuple[str, bytes]]]:
        """Each bucket's lines, as (where, line), in the order they were read."""
        self._close()
        for path in self.seen.paths:
            with open(path, "rb") as f:
                data = f.read()
            os.unlink(path)  # the disk copy shrinks as the report is written
            yield [(where.decode("utf-8", "replace"), line)
                   for where, _, line in (row.partition(b"\t") for row in data.splitlines())]


def _unescaped(raw: bytes) -> bytes:
    """An id written with JSON escapes, as the same bytes however it was escaped."""
    try:
        return orjson.loads(b'"' + raw + b'"').encode("utf-8", "surrogatepass")
    except orjson.JSONDecodeError:
        return raw
