"""Text from the feeds is data: what a sender wrote reaches events, alerts, rejections and pages only
as plain, bounded, visible text.

- `clean`: control and format characters removed (NUL, ESC, BEL, NEL, the bidirectional overrides
  and isolates that reverse what a nurse reads, zero-width characters), line and paragraph breaks
  and tabs become a space. What was removed is counted, so the translators can note it.
- `hl7_unescape`: HL7 v2 escape sequences (2.10) read with a bound: the delimiters (\\F\\ \\S\\ \\T\\
  \\R\\ \\E\\), hexadecimal data (\\Xhh..\\) decoded in the message's character set, and the formatting
  commands (\\.br\\, \\.sp\\, \\.skN\\, \\.in\\, \\.ti\\, \\.ce\\, \\.fi\\, \\.nf\\) and highlighting
  (\\H\\, \\N\\) as at most one space: an escape never yields more characters than it takes
  (python-hl7 expands `\\.sk100000000\\` to 100 MB).
- `cut`: a text quoted in an alert or a rejection, cut to a length with an ellipsis.
"""
from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "\u2026"
# Removed: control (Cc) and format (Cf: bidi overrides/isolates/marks, zero-width) characters,
# surrogates and private use; line/paragraph separators and whitespace controls become a space.
_SPACE = {"\t": " ", "\r": " ", "\n": " ", "\u2028": " ", "\u2029": " ", "\x0b": " ", "\x0c": " "}
_REMOVED = ("Cc", "Cf", "Cs", "Co")


def clean(text: str) -> tuple[str, int]:
    """`text` with controls and format characters removed and breaks as spaces; and how many
    characters were removed. Plain printable text comes back as it is (the common case, fast)."""
    if text.isprintable():
        return text, 0
    out, removed = [], 0
    for ch in text:
        if ch in _SPACE:
            out.append(" ")
        elif unicodedata.category(ch) in _REMOVED:
            removed += 1
        else:
            out.append(ch)
    return "".join(out), removed


def clean_lines(text: str) -> tuple[str, int]:
    """A whole HL7 message: `clean` every line, keeping the CR/LF that separate segments."""
    if all(ch.isprintable() or ch in "\r\n" for ch in text):
        return text, 0
    removed = 0
    lines = []
    for line in re.split(r"(\r\n|\r|\n)", text):
        if line in ("\r\n", "\r", "\n"):
            lines.append(line)
            continue
        line, n = clean(line)
        removed += n
        lines.append(line)
    return "".join(lines), removed


_FORMAT = re.compile(r"^\.(br|sp|sk|in|ti|ce|fi|nf)[+-]?\d{0,9}$")
_HEX = re.compile(r"^X((?:[0-9A-Fa-f]{2})+)$")


def hl7_unescape(value: str, esc: str, separators: str, codec: str = "utf-8") -> str:
    """`value` with its escape sequences read (HL7 v2 2.10), never longer than `value`.
    `separators`: field, component, repetition, subcomponent (MSH-1, MSH-2 minus the escape)."""
    if esc not in value:
        return value
    field, component, repetition, subcomponent = separators
    fixed = {"F": field, "S": component, "R": repetition, "T": subcomponent, "E": esc, "H": "", "N": ""}
    out: list[str] = []
    pos = 0
    while True:
        start = value.find(esc, pos)
        if start < 0:
            out.append(value[pos:])
            break
        end = value.find(esc, start + 1)
        if end < 0:  # an unterminated escape: the rest is text
            out.append(value[pos:])
            break
        out.append(value[pos:start])
        seq = value[start + 1:end]
        if seq in fixed:
            out.append(fixed[seq])
        elif _FORMAT.match(seq):
            out.append(" ")  # a line break, a skip, an indent: one space, whatever count it asks for
        elif (hexed := _HEX.match(seq)) is not None:
            text = bytes.fromhex(hexed.group(1)).decode(codec, "replace")
            out.append(clean(text)[0])
        # \Cxxyy\ and \Mxxyyzz\ (switching character sets inside a field) and \Z..\ (locally defined)
        # carry no text we can read: dropped
        pos = end + 1
    return "".join(out)


def cut(text: str, limit: int) -> str:
    """`text` shown in at most `limit` characters (an ellipsis marks a cut)."""
    return text if len(text) <= limit else text[:limit - 1] + ELLIPSIS


def clean_json(value, removed: list[int] | None = None):
    """Every string of a parsed JSON document `clean`ed (the FHIR feed's input); `removed[0]` counts
    the characters removed."""
    if isinstance(value, str):
        text, n = clean(value)
        if n and removed is not None:
            removed[0] += n
        return text
    if isinstance(value, dict):
        return {clean_json(k, removed): clean_json(v, removed) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v, removed) for v in value]
    return value
