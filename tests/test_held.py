"""cli/held.py: the batch command's discharged encounters on disk, read back exactly, files freed."""
import datetime as dt
import errno

import pytest

import cli.held
from cli.batch import run_batch
from cli.held import HeldStates, HeldStoreFull
from models.errors import BadEvent
from models.events import parse_event
from rules.book import Book, TooLate
from rules.encounter import Packed
from simulator import simulate

DAY = dt.date(2026, 3, 2)


def _archive(days: int, encounters: int) -> list[bytes]:
    """Consecutive simulated days: late documentation reaches encounters discharged the day before."""
    return [line.encode() for d in range(days)
            for line in simulate(encounters=encounters, seed=d, day=DAY + dt.timedelta(days=d))]


def _code(states, lines: list[bytes], retention_minutes: int) -> list:
    book = Book(states, retention_minutes=retention_minutes, gauges=False, pack_closed=True)
    out = []
    for raw in lines:
        try:
            out += book.handle(parse_event(raw, now=dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)))
        except (BadEvent, TooLate) as exc:
            out.append(str(exc))
    return out


class _Counted(HeldStates):
    reads = 0

    def _read(self, ref):
        self.reads += 1
        return super()._read(ref)


def test_an_archive_codes_the_same_with_encounters_on_disk_as_in_memory(tmp_path):
    lines = _archive(days=4, encounters=300)
    on_disk = _Counted(span_seconds=3600, directory=str(tmp_path))
    assert _code(on_disk, lines, retention_minutes=720) == _code({}, lines, retention_minutes=720)
    assert on_disk.reads > 50  # late events and purges read held encounters back
    assert all(type(v) is not Packed for v in on_disk.values())  # memory keeps only where they are
    # Purged after 12 hours of event time: only the last half day's files stay open.
    assert 0 < on_disk.files <= 14


def test_records_read_back_from_memory_and_disk_whatever_their_size(tmp_path):
    held = HeldStates(span_seconds=60, directory=str(tmp_path))
    packed = {f"E{i}": Packed(1_000_000 + i, bytes([i % 256]) * (8 * (i % 700)), b"doc %d " % i * (i % 50))
              for i in range(2_000)}  # 4 MB: most written out, the last in the write buffer; some over 4 KB
    for key, value in packed.items():
        held[key] = value
    assert all(held[key] == value for key, value in packed.items())
    assert held.get("missing") is None


def test_a_file_is_closed_once_none_of_its_encounters_is_held(tmp_path):
    held = HeldStates(span_seconds=100, directory=str(tmp_path))
    held["A"], held["B"], held["C"] = (Packed(at, b"", b"[]") for at in (10, 20, 150))
    assert held.files == 2
    del held["A"]
    assert held.files == 2
    held["B"] = Packed(160, b"", b"[1]")  # written again, in the later file
    assert held.files == 1 and held["B"] == Packed(160, b"", b"[1]")
    held["C"] = "an open state"  # reopened: back in memory
    del held["B"]
    assert held.files == 0 and held["C"] == "an open state"


def test_a_full_disk_says_what_to_do(tmp_path, monkeypatch):
    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli.held.os, "pwrite", full)
    lines = _archive(days=1, encounters=600)
    with pytest.raises(HeldStoreFull) as caught:
        run_batch(lines, open(tmp_path / "out.jsonl", "wb"), held_dir=str(tmp_path))
    assert isinstance(caught.value, OSError)  # the command prints an OSError's text and exits 1
    assert "No space left on device" in str(caught.value)
    assert "set TMPDIR to a directory with room, or lower --retention-days" in str(caught.value)


def test_a_short_write_is_written_on(tmp_path, monkeypatch):
    real = cli.held.os.pwrite
    monkeypatch.setattr(cli.held.os, "pwrite", lambda fd, data, offset: real(fd, bytes(data[:1000]), offset))
    held = HeldStates(span_seconds=60, directory=str(tmp_path))
    packed = {f"E{i}": Packed(1_000_000, b"12345678" * 3, b"doc %d " % i * 40) for i in range(400)}  # > 64 KB
    for key, value in packed.items():
        held[key] = value
    assert all(held[key] == value for key, value in packed.items())
