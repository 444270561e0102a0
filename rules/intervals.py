"""Minute intervals [start, stop) in epoch minutes: union, overlap, and when a total is reached."""
from __future__ import annotations

Interval = tuple[int, int]


def union(intervals: list[Interval]) -> list[Interval]:
    if len(intervals) < 2:
        return list(intervals)  # the common case: nothing to merge
    merged: list[Interval] = []
    for start, stop in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if stop > merged[-1][1]:
                merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


def subtract(base: list[Interval], cut: list[Interval]) -> list[Interval]:
    """`base` minus `cut`; both must be unions (sorted, disjoint)."""
    out: list[Interval] = []
    for start, stop in base:
        cursor = start
        for c_start, c_stop in cut:
            if c_stop <= cursor or c_start >= stop:
                continue
            if c_start > cursor:
                out.append((cursor, c_start))
            cursor = max(cursor, c_stop)
        if cursor < stop:
            out.append((cursor, stop))
    return out


def total(intervals: list[Interval]) -> int:
    return sum(stop - start for start, stop in intervals)


def overlap(interval: Interval, covered: list[Interval]) -> int:
    start, stop = interval
    return sum(max(0, min(stop, c_stop) - max(start, c_start)) for c_start, c_stop in covered)


def instant_at(intervals: list[Interval], minutes: int) -> int:
    """The instant at which the running total of `intervals` reaches `minutes`."""
    done = 0
    for start, stop in intervals:
        if done + (stop - start) >= minutes:
            return start + (minutes - done)
        done += stop - start
    raise ValueError(f"intervals hold {done} minutes, fewer than {minutes}")


def instants_at(intervals: list[Interval], totals: list[int]) -> list[int]:
    """instant_at for each of `totals` (ascending), in one pass over `intervals`."""
    out: list[int] = []
    k, done = 0, 0  # totals[k] is the next to place; `done` minutes lie before `start`
    for start, stop in intervals:
        if k == len(totals):
            break
        span = stop - start
        while k < len(totals) and totals[k] - done <= span:
            out.append(start + totals[k] - done)
            k += 1
        done += span
    if k < len(totals):
        raise ValueError(f"intervals hold {done} minutes, fewer than {totals[k]}")
    return out
