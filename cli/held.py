"""The batch command's encounter states, with discharged encounters kept on disk until they expire.

`code` holds every encounter discharged within the retention window (14 days of event time by
default) for late documentation. Packed (rules.encounter.Packed), one still costs about 330 B of
heap for its document and event-id digests, and those long-lived small objects, allocated between
the open encounters' ones, keep the allocator's pools from being reused (docs/benchmarks.md, (h)).
So HeldStates writes each packed encounter to an unlinked temporary file (in TMPDIR) and keeps
only an int in memory: where it is. An event for it reads it back (late documentation: rare). The
files are this process's alone: unlinked, and the event-id digests in them are seeded per process.

Files are cut by discharge time, `span` seconds each. A file is closed, and so freed, once none of
its encounters is held any more (purged at the end of its retention, or written again elsewhere),
so the disk holds about what the retention window holds: some 430 B an encounter.
"""
from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator, MutableMapping

from rules.encounter import Packed

_HEADER = struct.Struct("<qII")  # discharged_at, digests' length, document's length
_READ = 4096  # one pread gets a whole record nearly always (a record is about 430 B)
_WRITE = 1 << 16  # records are written 64 KB at a time: a write per record cost 13 us (measured)
_OFFSET_BITS = 40  # a reference is its file's number << 40 | its offset: files up to 1 TB


class HeldStoreFull(OSError):
    """The temporary directory has no room for another held encounter."""


class _File:
    __slots__ = ("handle", "size", "written", "pending", "held")

    def __init__(self, directory: str | None) -> None:
        self.handle = tempfile.TemporaryFile(dir=directory, prefix="iv-held-", buffering=0)  # unlinked
        self.size = 0  # bytes of records, on disk and pending
        self.written = 0  # bytes on disk; the rest are in `pending`, whole records
        self.pending = bytearray()
        self.held = 0  # encounters whose newest record is here

    def append(self, record: bytes) -> int:
        """Add a record; returns its offset."""
        offset = self.size
        self.pending += record
        self.size += len(record)
        if len(self.pending) >= _WRITE:
            with memoryview(self.pending) as view:
                done = 0
                while done < len(view):  # a filling disk writes part, then raises ENOSPC
                    done += os.pwrite(self.handle.fileno(), view[done:], self.written + done)
            self.written = self.size
            self.pending.clear()
        return offset

    def read(self, offset: int) -> bytes:
        """The bytes from a record's offset: at least the whole record."""
        if offset >= self.written:
            at = offset - self.written
            _, seen, doc = _HEADER.unpack_from(self.pending, at)
            return bytes(self.pending[at:at + _HEADER.size + seen + doc])
        data = os.pread(self.handle.fileno(), _READ, offset)
        _, seen, doc = _HEADER.unpack_from(data)
        end = _HEADER.size + seen + doc
        return data if len(data) >= end else os.pread(self.handle.fileno(), end, offset)


class HeldStates(MutableMapping):
    """encounter id -> EncounterState (open, or discharged and being updated) or Packed (discharged).

    A Packed set here goes to disk; reading it gives a Packed back. `values()` gives what memory
    holds, without reading the disk: each open EncounterState, and an int for each held encounter."""

    def __init__(self, span_seconds: int = 86400, directory: str | None = None) -> None:
        self.span = span_seconds
        self.directory = directory  # None: TMPDIR, else the system's temporary directory
        self._states: dict = {}
        self._files: dict[int, _File] = {}

    def get(self, key, default=None):  # Book.handle's per-event lookup: one call, not two
        value = self._states.get(key, default)
        return self._read(value) if type(value) is int else value

    def __getitem__(self, key):
        value = self._states[key]
        return self._read(value) if type(value) is int else value

    def __setitem__(self, key, value) -> None:
        old = self._states.get(key)
        if type(old) is int:
            self._release(old)
        self._states[key] = self._write(value) if type(value) is Packed else value

    def __delitem__(self, key) -> None:
        old = self._states.pop(key)
        if type(old) is int:
            self._release(old)

    def __iter__(self) -> Iterator:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def values(self):
        return self._states.values()

    @property
    def files(self) -> int:
        """Temporary files open: about the retention window's length in spans."""
        return len(self._files)

    def close(self) -> None:
        for f in self._files.values():
            f.handle.close()
        self._files.clear()

    # -- records -------------------------------------------------------------------------

    def _write(self, packed: Packed) -> int:
        number = packed.discharged_at // self.span
        f = self._files.get(number)
        if f is None:
            f = self._files[number] = self._open()
        record = _HEADER.pack(packed.discharged_at, len(packed.seen), len(packed.doc)) + packed.seen + packed.doc
        try:
            offset = f.append(record)
        except OSError as exc:
            raise HeldStoreFull(exc.errno, self._advice(exc)) from None
        f.held += 1
        return number << _OFFSET_BITS | offset

    def _read(self, ref: int) -> Packed:
        data = self._files[ref >> _OFFSET_BITS].read(ref & ((1 << _OFFSET_BITS) - 1))
        discharged_at, seen, doc = _HEADER.unpack_from(data)
        start = _HEADER.size
        return Packed(discharged_at, data[start:start + seen], data[start + seen:start + seen + doc])

    def _release(self, ref: int) -> None:
        number = ref >> _OFFSET_BITS
        f = self._files[number]
        f.held -= 1
        if f.held == 0:
            f.handle.close()
            del self._files[number]

    def _open(self) -> _File:
        try:
            return _File(self.directory)
        except OSError as exc:
            raise HeldStoreFull(exc.errno, self._advice(exc)) from None

    def _advice(self, exc: OSError) -> str:
        where = self.directory or tempfile.gettempdir()
        held = sum(f.held for f in self._files.values())
        return (f"cannot keep discharged encounters in {where} ({exc.strerror}; {held:,} held, about 430 B "
                "each): set TMPDIR to a directory with room, or lower --retention-days")
