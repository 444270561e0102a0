"""HL7 v2 date/times (DTM) placed on the time line.

Contract v1 needs every time with its UTC offset; most real HL7 feeds send local time without one.
HL7 v2.5 (2.A.22) says such a time is in the sender's local zone, so a `Clock` reads a message's
times this way:
1. the time's own offset (`20261124083000-0500`) when it has one;
2. else the sender's zone. MSH-7's offset, when present, is the sender's word and comes first: if a
   facility zone is configured (`--timezone` / IV_TIMEZONE, an IANA name) and gives that same offset
   at MSH-7's time, the zone is used, so each time gets its own offset from zoneinfo and a message
   spanning a daylight-saving change is placed right; if the zone gives another offset, the sender
   is elsewhere and MSH-7's fixed offset is used. Without MSH-7's offset, the configured zone. A local
   time that does not exist in the zone (the skipped hour) or exists twice (the repeated hour) is a
   problem: only the sender can say which instant it meant;
3. else the time is rejected, saying to configure the zone or send offsets.

A time placed before 2000 or in the future (the contract's bounds) is rejected here, naming its field.
No rejection quotes the time itself: the time of a clinical event is a date about a patient; the
field's name and what to send say enough to fix it, and the dead letter's raw holds the message.
"""
from __future__ import annotations

import datetime as dt
import re
import time
from datetime import tzinfo

from feeds.translation import Reject
from models.events import EARLIEST, FUTURE_SLACK

DTM = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.\d{1,4})?(?:([+-])(\d{2})(\d{2}))?$")


class Clock:
    def __init__(self, msh7: str, zone: tzinfo | None) -> None:
        self.msh7 = msh7
        self.zone = zone
        local, self.sender = _message_time(msh7)  # MSH-7's offset, when it has a valid one
        if zone is not None and self.sender is not None and not _zone_agrees(zone, local, self.sender):
            self.zone = None  # the sender says it is elsewhere: its word first

    def at(self, value: str, where: str) -> dt.datetime:
        """The instant `value` (a DTM precise to the minute) means, or Reject saying what to fix."""
        return _bounded(self._place(value, where), where)

    def _place(self, value: str, where: str) -> dt.datetime:
        local, offset = parse(value, where)
        if offset is not None:
            return local.replace(tzinfo=dt.timezone(offset))
        if self.zone is not None:
            return _in_zone(local, self.zone, where)
        if self.sender is not None:
            return local.replace(tzinfo=dt.timezone(self.sender))
        raise Reject("hl7_bad_value", f"{where} has no UTC offset and no facility time zone is set: "
                     "set --timezone or IV_TIMEZONE to the sending facility's IANA zone (e.g. America/New_York), "
                     "or have the sender or interface engine add the offset (e.g. 20261124083000-0500)")


def parse(value: str, where: str) -> tuple[dt.datetime, dt.timedelta | None]:
    """A DTM's local date/time (naive, seconds kept, fractions dropped) and its offset, if any."""
    m = DTM.match(value)
    if not m:
        raise Reject("hl7_bad_value", f"{where} is not an HL7 date/time precise to the minute; send "
                     "YYYYMMDDHHMM[SS][+/-ZZZZ], e.g. 20261124083000-0500")
    year, month, day, hour, minute, second, sign, oh, om = m.groups()
    try:
        local = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:
        raise Reject("hl7_bad_value", f"{where} is not a valid date/time: its month, day, hour, minute or second "
                     "is out of range") from None
    offset = None
    if sign is not None:
        offset = dt.timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
        if abs(offset) >= dt.timedelta(hours=24) or int(om) >= 60:
            raise Reject("hl7_bad_value", f"{where} has a UTC offset that is not one (24 hours or more, or "
                         "over 59 minutes); send +/-HHMM, e.g. -0500")
    return local, offset


def _message_time(value: str) -> tuple[dt.datetime | None, dt.timedelta | None]:
    try:
        return parse(value, "MSH-7")
    except Reject:
        return None, None  # a broken MSH-7 is reported where its time is needed, not here


def _zone_agrees(zone: tzinfo, local: dt.datetime, offset: dt.timedelta) -> bool:
    return offset in (local.replace(tzinfo=zone, fold=0).utcoffset(), local.replace(tzinfo=zone, fold=1).utcoffset())


def _bounded(when: dt.datetime, where: str) -> dt.datetime:
    if not EARLIEST <= when.timestamp() <= time.time() + FUTURE_SLACK:
        raise Reject("hl7_bad_value", f"{where} is before 2000 or in the future; check the clock of the sending "
                     "system")
    return when


def _in_zone(local: dt.datetime, zone: tzinfo, where: str) -> dt.datetime:
    early, late = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        back = early.astimezone(dt.timezone.utc).astimezone(zone).replace(tzinfo=None)
        what = ("does not exist in {zone} (the hour skipped when daylight saving starts)" if back != local else
                "occurs twice in {zone} (the hour repeated when daylight saving ends)")
        raise Reject("hl7_bad_value", f"{where} {what.format(zone=zone)}: the sender must send this "
                     "time with its UTC offset")
    return local.replace(tzinfo=dt.timezone(early.utcoffset()))
