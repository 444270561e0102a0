"""What the pipeline needs from the Kafka runtime under it, and nothing more.

The pipeline (streams/pipeline.py), the aligner, the intake, the deliveries and the read ledger
talk to the runtime only through this interface. In production it is faust
(streams/faust_runtime/: its app, the patches, the inbox, its consumer and producer, its table and
changelog); tests/fake_runtime.py implements it in memory, so the pipeline's behaviour through
rebalances, lost reads, alignment waits and failed deliveries is tested in milliseconds, beside
the broker tests.

A record is what the consumer handed over: `tp`, `topic`, `partition`, `offset`, `key`, `value`,
`timestamp` (epoch milliseconds), `headers`. State writes go to a per-encounter store whose
changelog is a compacted topic; the store is the runtime's (faust's memory or rocksdb store).
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol


class TP(NamedTuple):
    """A topic partition; equal to faust's and aiokafka's (both are named tuples of the same fields)."""
    topic: str
    partition: int


class Runtime(Protocol):
    # -- records handed over -------------------------------------------------------------------
    def current(self, record: Any) -> bool:
        """The record was fetched in the current group generation and the partition is still ours:
        process it. Otherwise it is left alone (never acked) and read again by whoever owns it."""

    def track(self, record: Any) -> None:
        """The runtime commits no offset past this record until it is acked or untracked."""

    def untrack(self, record: Any) -> None:
        """The pipeline holds the record (aligning) or drops it (a stale copy): commits are not held
        by it; its partition's commits are held by the ledger's first pending record instead."""

    def ack(self, record: Any) -> None:
        """Processed and its outputs delivered: offsets up to it may be committed."""

    async def seek(self, tp: TP, offset: int) -> None:
        """Read the partition again from `offset` (records lost on the way, or passed over)."""

    def pause(self, tps: Iterable[TP]) -> None:
        """Stop fetching these partitions (too much of them held)."""

    def resume(self, tps: Iterable[TP]) -> None: ...

    def highwater(self, tp: TP) -> int | None:
        """The partition's end offset as last fetched (None: not known yet); raises when the
        partition is not assigned to this worker."""

    def noted(self, tps: Iterable[TP], now: float) -> None:
        """Records of these partitions reached the pipeline at monotonic `now` (the runtime's own
        liveness checks)."""

    def processing(self, record: Any) -> AbstractContextManager:
        """The context in which `record` is processed (a store that keys by partition reads it)."""

    # -- outputs and state ---------------------------------------------------------------------
    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None,
                   timestamp: float | None, headers: Any) -> asyncio.Future:
        """Enqueue one record on the producer, in call order; returns its delivery future."""

    async def send_state(self, key: str, value: bytes | None, partition: int) -> asyncio.Future:
        """Enqueue one state change on the store's changelog, in call order; the store learns the
        offset it reached once it is delivered."""

    def put_state(self, key: str, value: bytes | None, partition: int) -> None:
        """Write (None: delete) one state in the store, in the encounter's own partition."""

    def forget_outbox(self, key: str, written: bytes, stripped: bytes) -> None:
        """A delivered outbox leaves memory: `stripped` replaces `written` unless rewritten since."""
