"""The national edit files a hospital supplies (coding-rules §7), read from disk for `code --mue/--ptp`
and the worker's IV_MUE_FILE / IV_PTP_FILES; parsed by rules/edits.py."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from rules.edits import EditFileError, NationalEdits, decode, parse_mue, parse_ptp


def load_edits(mue: Sequence[str] = (), ptp: Sequence[str] = ()) -> NationalEdits | None:
    """The edits of the MUE table(s) (one per billing type) and PTP files; None when none is given.
    An unreadable or unusable file raises EditFileError (a ValueError) naming it."""
    if not mue and not ptp:
        return None
    return _load(tuple(mue), tuple(ptp), tuple(_stamp(p) for p in (*mue, *ptp)))


def _stamp(path: str) -> tuple[float, int]:
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise EditFileError(f"cannot read edit file {path}: {exc.strerror}") from None
    return st.st_mtime, st.st_size


@lru_cache(maxsize=4)  # the worker asks twice at start (a check, then the app): the files are read once
def _load(mue: tuple[str, ...], ptp: tuple[str, ...], _stamps: tuple) -> NationalEdits:
    def text(path: str) -> tuple[str, str]:
        name = Path(path).name
        try:
            return decode(Path(path).read_bytes(), name), name
        except OSError as exc:
            raise EditFileError(f"cannot read edit file {path}: {exc.strerror}") from None

    return NationalEdits(tuple(parse_mue(*text(p)) for p in mue), tuple(parse_ptp(*text(p)) for p in ptp))
