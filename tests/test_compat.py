"""The faust fix in streams/compat.py: offsets are never committed past a record that was fetched
but not processed (faust dropped such records around rebalances and committed past them: events
lost after kill -9), and such a hole is read again. And the patches refuse faust/aiokafka versions
they were not written for."""
import asyncio
import tomllib
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams import compat, logs
from streams.cli import main

compat.apply()
TP0 = TP("mar.administration.started", 0)


def _consumer(committed=None, acked=(), first_fetched=None, gaps=()):
    seeks = []

    async def seek(tp, offset):
        seeks.append((tp, offset))

    c = SimpleNamespace(_acked=defaultdict(list), _acked_index=defaultdict(set), _gap=defaultdict(IntervalTree),
                        _committed_offset=defaultdict(lambda: None), seek=seek, seeks=seeks)
    c._acked[TP0].extend(acked)
    c._acked_index[TP0].update(acked)
    if committed is not None:
        c._committed_offset[TP0] = committed
    if first_fetched is not None:
        c._iv_first_fetched = {TP0: first_fetched}
    for begin, end in gaps:
        c._gap[TP0].addi(begin, end)
    return c


def _new_offset(c):
    async def run():
        result = Consumer._new_offset(c, TP0)
        await asyncio.sleep(0)  # let a scheduled seek run
        return result
    return asyncio.run(run())


def test_a_consecutive_run_from_the_committed_offset_is_committed():
    assert _new_offset(_consumer(committed=10, acked=[10, 11, 12])) == 13


def test_no_commit_past_an_unprocessed_record_even_one():
    # faust alone commits here: it lets a hole of exactly one offset through (min(acked) - committed > 1)
    c = _consumer(committed=10, acked=[11, 12])
    assert _new_offset(c) is None
    assert c._acked[TP0] == [11, 12]  # kept for when the hole is filled


def test_a_never_committed_partition_starts_at_the_first_record_fetched():
    # faust alone commits 10 here: with no committed offset it does not check the head at all
    assert _new_offset(_consumer(acked=[5, 6, 7, 8, 9], first_fetched=0)) is None
    assert _new_offset(_consumer(acked=[0, 1, 2], first_fetched=0)) == 3


def test_offsets_faust_knows_are_missing_do_not_block():
    assert _new_offset(_consumer(committed=10, acked=[13, 14], gaps=[(10, 13)])) == 15


def test_a_lasting_hole_is_read_again_from_its_start(monkeypatch):
    monkeypatch.setattr(compat, "HOLE_SECONDS", 0.0)
    c = _consumer(committed=10, acked=[15, 16])
    assert _new_offset(c) is None
    assert c.seeks == [(TP0, 10)]


def test_other_faust_or_aiokafka_versions_are_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(compat, "version", lambda name: {"faust-streaming": "0.15.3", "aiokafka": "0.15.0"}[name])
    with pytest.raises(compat.VersionMismatch) as refused:
        compat.apply()
    assert str(refused.value).startswith(
        "streams/compat.py was written for faust-streaming 0.15.3 and aiokafka 0.14.0; found faust-streaming 0.15.3 "
        "and aiokafka 0.15.0: install the pinned versions (pip install -e .) or re-check the patches")


def test_the_installed_versions_are_the_pinned_ones_compat_was_written_for():
    compat.apply()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pins = {f"{name}=={v}" for name, v in compat.WRITTEN_FOR.items()}
    assert pins <= set(pyproject["project"]["dependencies"])


def test_the_worker_stops_with_that_message_before_connecting(monkeypatch, capsys):
    monkeypatch.setattr(compat, "version", lambda name: "9.9.9")
    monkeypatch.setattr(logs, "configure", lambda *args: None)  # leave the test session's logging alone
    # --create-topics against a closed port: a connection attempt would fail with another message
    assert main(["worker", "--create-topics", "--bootstrap-servers", "127.0.0.1:1"]) == 1
    assert capsys.readouterr().err.startswith("infusion-validator worker: streams/compat.py was written for "
                                              "faust-streaming 0.15.3 and aiokafka 0.14.0; found faust-streaming 9.9.9")
