"""`CronSchedule`: a cron expression in a time zone, as pure functions of Unix time.

cronsim does the calendar arithmetic, with Debian cron's rules for daylight saving:
a job at a fixed wall time (``30 2 * * *``) runs once on the night the clocks go back
(at the first 02:30), and on the night they spring forward it runs at the first
instant after the gap (03:00); a job whose hour is a wildcard (``*/15 * * * *``,
``0 * * * *``) runs on every real hour, both 02:00s of a fall-back night included.
Times in and out are Unix seconds (UTC), so ticks are ordered and keyed without zones.
"""

from __future__ import annotations

import datetime
import zoneinfo

import attrs

from foxactors._errors import ConfigurationError

try:
    import cronsim
except ImportError as exc:  # pragma: no cover - the jobs extra is installed in the suite
    raise ImportError(
        "foxactors periodic jobs read cron expressions with cronsim: pip install 'foxactors[jobs]'"
    ) from exc

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The nicknames of Vixie cron (and Oban's Cron plugin), as the expressions they stand for."""

SEARCH_LIMIT = 1000
"""Candidates one search reads at most before it calls the expression impossible."""


def _zone(name: object) -> zoneinfo.ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"tz must be an IANA time zone name such as 'UTC' or 'Europe/Berlin', got {name!r}"
        )
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r}: give an IANA name such as 'UTC', 'Europe/Berlin' "
            "or 'America/New_York' (zoneinfo.available_timezones() lists them)"
        ) from None


@attrs.frozen
class CronSchedule:
    """When a cron expression fires, in a time zone; built only through `CronSchedule.of`.

    Attributes:
        expression: The expression as given (five fields, six with seconds first, or
            a nickname such as ``@daily``).
        timezone: The IANA zone its wall times are read in.
    """

    expression: str
    timezone: str
    _spec: str = attrs.field(repr=False)
    _zone: zoneinfo.ZoneInfo = attrs.field(repr=False)

    @classmethod
    def of(cls, expression: object, timezone: object = "UTC") -> CronSchedule:
        """Check ``expression`` and ``timezone`` and build the schedule.

        Raises:
            ConfigurationError: The expression cannot be read or can never fire, or
                the zone is unknown; the message names the value and the fix.
        """
        zone = _zone(timezone)
        if not isinstance(expression, str) or not expression.strip():
            raise ConfigurationError(
                f"a cron expression must be a string such as '*/5 * * * *', got {expression!r}"
            )
        spec = ALIASES.get(expression.strip().lower(), expression.strip())
        try:
            probe = cronsim.CronSim(spec, datetime.datetime(2000, 1, 1, tzinfo=zone))
            next(probe)
        except (cronsim.CronSimError, StopIteration) as exc:
            why = str(exc) or "it never fires"
            raise ConfigurationError(
                f"invalid cron expression {expression!r} ({why}): give five fields, "
                "'minute hour day-of-month month day-of-week' (e.g. '*/5 * * * *' or "
                "'0 3 * * 1-5'), six with seconds first, or one of "
                f"{', '.join(ALIASES)}"
            ) from None
        assert isinstance(timezone, str)
        return cls(expression, timezone, spec, zone)

    def _local(self, seconds: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(seconds, self._zone)

    def next_after(self, seconds: float) -> float:
        """The first tick strictly after ``seconds`` (Unix time)."""
        for found, _ in zip(
            cronsim.CronSim(self._spec, self._local(seconds)), range(SEARCH_LIMIT), strict=False
        ):
            tick = found.timestamp()
            if tick > seconds:  # a fixed time in a repeated hour can come back earlier
                return tick
        raise ConfigurationError(f"cron expression {self.expression!r} never fires again")

    def previous(self, seconds: float) -> float:
        """The last tick at or before ``seconds`` (Unix time).

        Searched backwards, then checked forwards: backwards, a fixed wall time in a
        repeated hour reads as the day before; the forward walk finds the tick
        `next_after` gives, so the two always agree.
        """
        point = seconds
        for _ in range(SEARCH_LIMIT):
            backwards = cronsim.CronSim(self._spec, self._local(point), reverse=True)
            candidate = next(
                (
                    f.timestamp()
                    for f, _ in zip(backwards, range(SEARCH_LIMIT), strict=False)
                    if f.timestamp() <= point
                ),
                None,
            )
            if candidate is None:
                break
            # Forwards from just before it: a real tick (a backward one in a daylight-
            # saving gap may not be), then on to the last one at or before ``seconds``.
            tick = self.next_after(candidate - 1)
            if tick <= seconds:
                while (after := self.next_after(tick)) <= seconds:
                    tick = after
                return tick
            point = candidate - 1
        raise ConfigurationError(f"cron expression {self.expression!r} never fired")

    def at(self, seconds: float) -> datetime.datetime:
        """``seconds`` as an aware datetime in the schedule's zone (for people)."""
        return self._local(seconds)

    def explain(self) -> str:
        """The expression in words (cronsim's), e.g. "Every fifth minute of every hour"."""
        return str(cronsim.CronSim(self._spec, self._local(0)).explain())
