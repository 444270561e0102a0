"""The faust fix in streams/faust_runtime/compat.py: offsets are never committed past a record that was fetched
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

from streams import logs
from streams.faust_runtime import compat
from cli.main import main
from streams.ledger import ReadLedger

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


def test_a_hole_is_never_committed_past_however_long_it_lasts():
    c = _consumer(committed=10, acked=[15, 16])
    assert _new_offset(c) is None
    assert c.seeks == []  # reading it again is the ledger's job (streams/ledger.py), not a timer's


# -- what is handed to faust's drain (compat.hand_over) ------------------------------------

class _Msg:
    def __init__(self, offset):
        self.offset = offset


def _drain_consumer(ledger, assignment=(TP0,)):
    c = _consumer()
    c.__dict__.update(_read_offset={}, flow_active=True, assignment=lambda: set(assignment))
    compat.attach_ledger(c, ledger)

    async def seek(tp, offset):  # as the patched Consumer.seek: the ledger restarts the partition
        c.seeks.append((tp, offset))
        ledger.restart(tp, offset)
    c.seek = seek
    return c


def _hand_over(c, offsets, batch, tp=TP0):
    async def records():
        for o in offsets:
            yield tp, _Msg(o)

    async def run():
        return [m.offset async for _, m in compat.hand_over(c, records(), batch)]
    return asyncio.run(run())


def _batch(c, ranges=None):
    b = compat._Batch()
    b.epochs = dict(compat.ledger_of(c).epochs)
    b.ranges = ranges or {}
    return b


def test_records_continue_the_ledger_and_the_drain_sees_no_false_gap():
    ledger = ReadLedger([TP0.topic])
    c = _drain_consumer(ledger)
    assert _hand_over(c, [0, 1, 2], _batch(c)) == [0, 1, 2]
    c._read_offset[TP0] = 0  # faust's drain overwrote its read offset with a seek's (the race)
    assert _hand_over(c, [1, 2, 3, 4], _batch(c)) == [3, 4]  # 1, 2 handed already; 3 not dropped
    assert c._read_offset[TP0] == 4 and not c._gap[TP0]


def test_a_batch_fetched_before_a_seek_is_stale_and_the_partition_read_again():
    ledger = ReadLedger([TP0.topic])
    c = _drain_consumer(ledger)
    before = _batch(c)  # fetched ...
    ledger.restart(TP0, 62)  # ... then faust sought to the committed offset (table recovery)
    assert _hand_over(c, [90, 91], before) == []  # faust's drain would have taken 63-89 for a gap
    assert c.seeks == [(TP0, 62)]
    assert _hand_over(c, [62, 63], _batch(c)) == [62, 63]


def test_offsets_aiokafka_skipped_in_one_fetch_are_a_real_gap_for_the_commit():
    ledger = ReadLedger([TP0.topic])
    c = _drain_consumer(ledger)
    assert _hand_over(c, [10, 11, 13], _batch(c)) == [10, 11, 13]  # 12: a transaction marker
    assert [(iv.begin, iv.end) for iv in c._gap[TP0]] == [(12, 13)]


def test_records_the_fetcher_handed_over_and_faust_did_not_yield_are_read_again():
    ledger = ReadLedger([TP0.topic])
    c = _drain_consumer(ledger)
    assert _hand_over(c, [5, 6], _batch(c, {TP0: (5, 9)})) == [5, 6]  # faust stopped after 6
    assert c.seeks == [(TP0, 7)]


def test_a_changelog_batch_yielded_whole_is_not_read_again():
    """Table recovery reads the changelog through the same getmany. Its records were yielded but not
    written down as given, so every batch of a changelog partition was sought back to its first
    offset and fetched again: a restart with 100,000 open encounters recovered for over 10 minutes
    (issue 14's (d)), and finished only when a partition's rest fitted one 32 KB fetch."""
    changelog = TP("iv-encounters-changelog", 3)
    ledger = ReadLedger([TP0.topic])
    c = _drain_consumer(ledger, assignment=(TP0, changelog))
    assert _hand_over(c, [5, 6, 7], _batch(c, {changelog: (5, 7)}), changelog) == [5, 6, 7]
    assert c.seeks == []


def test_other_faust_or_aiokafka_versions_are_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(compat, "version", lambda name: {"faust-streaming": "0.15.3", "aiokafka": "0.15.0"}[name])
    with pytest.raises(compat.VersionMismatch) as refused:
        compat.apply()
    assert str(refused.value).startswith(
        "streams/faust_runtime/compat.py was written for faust-streaming 0.15.3 and aiokafka 0.14.0; found faust-streaming 0.15.3 "
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
    assert capsys.readouterr().err.startswith("infusion-validator worker: streams/faust_runtime/compat.py was written for "
                                              "faust-streaming 0.15.3 and aiokafka 0.14.0; found faust-streaming 9.9.9")


def test_after_a_rebalance_a_partition_never_committed_is_read_from_its_beginning():
    """aiokafka seeks only partitions with a committed offset above 0: one never committed would
    keep its position, past records fetched before the rebalance and never processed (held for
    time alignment, or cleared from faust's queues), and lose them."""
    committed, fresh = TP("mar.administration.stopped", 1), TP("mar.administration.stopped", 2)
    ledger = ReadLedger([committed.topic])
    c = _drain_consumer(ledger, assignment=(committed, fresh, TP("encounters-changelog", 0)))

    async def faust_perform_seek(self):  # faust: committed offsets become the read offsets
        self._read_offset.update({committed: 40, fresh: None})

    asyncio.run(compat._perform_seek_and_restart(c, faust_perform_seek))
    assert set(c.seeks) == {(committed, 40), (fresh, 0)}
    assert ledger.expected(committed) == 40 and ledger.expected(fresh) == 0


def test_records_fetched_again_while_faust_seeks_to_committed_are_fetched_once_more():
    """The two-worker test's stall (1 run in 6): faust's perform_seek moves aiokafka back to the
    committed offset in the consumer thread while this loop hands records over; the records fetched
    again reached the drain before the ledger restarted and were skipped as handed over already.
    Then the ledger expected offset 18 and aiokafka, at the end of the log, had nothing to fetch."""
    tp = TP("mar.administration.started", 1)
    ledger = ReadLedger([tp.topic])
    c = _drain_consumer(ledger, assignment=(tp,))
    assert _hand_over(c, range(18, 30), _batch(c), tp) == list(range(18, 30))  # before the rebalance
    skipped = []

    async def faust_perform_seek(self):
        self._read_offset[tp] = 18  # the committed offset; aiokafka reads from there again ...
        batch = _batch(c)
        async def refetched():
            for o in range(18, 30):
                yield tp, _Msg(o)
        skipped.extend([m.offset async for _, m in compat.hand_over(c, refetched(), batch)])  # ... at once

    asyncio.run(compat._perform_seek_and_restart(c, faust_perform_seek))
    assert skipped == []  # the drain took them for copies of what it had (they were not)
    assert c.seeks == [(tp, 18)] and ledger.expected(tp) == 18  # so aiokafka reads them once more
    assert _hand_over(c, range(18, 21), _batch(c), tp) == [18, 19, 20]
