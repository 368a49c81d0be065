"""Budget windows: the calendar window (a day, a week from Monday, a month) an instant is in.

Pure arithmetic on epoch milliseconds in an IANA timezone. A window starts at
local midnight (the first instant of its day when a DST change skips
midnight) and ends at the first millisecond of the next one, so a day is 23
or 25 hours long across a DST change, and a budget's spend resets at the
boundary computed from timestamps alone: no timer has to fire, and a daemon
that was down across a boundary reads the right window when it is back.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import Literal

Window = Literal["none", "day", "week", "month"]
WINDOWS: tuple[Window, ...] = ("none", "day", "week", "month")
DEFAULT_ZONE = "UTC"


@functools.lru_cache(maxsize=512)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; ValueError naming it when there is none."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # A path-like or malformed key raises ValueError; a missing one, NotFound.
        raise ValueError(f"{name!r} is not a known IANA timezone") from exc


def _midnight(day: dt.date, tz: zoneinfo.ZoneInfo) -> int:
    """Epoch ms of local midnight on `day` (fold 0: the earlier one when midnight repeats;
    in a gap, the instant the clocks jumped, which is the first instant of that day)."""
    local = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    return int(local.timestamp()) * 1000


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def bounds(window: Window, timezone: str, at_ms: int) -> tuple[int, int] | None:
    """(start, end) in epoch ms of the `window` that contains `at_ms`; None for "none"."""
    if window == "none":
        return None
    tz = zone(timezone)
    today = dt.datetime.fromtimestamp(at_ms // 1000, tz).date()
    if window == "day":
        first, following = today, today + dt.timedelta(days=1)
    elif window == "week":
        first = today - dt.timedelta(days=today.weekday())  # Monday
        following = first + dt.timedelta(days=7)
    else:
        first = today.replace(day=1)
        following = _next_month(first)
    return _midnight(first, tz), _midnight(following, tz)
