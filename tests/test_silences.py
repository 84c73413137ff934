"""Recurring silences: the config's schedules, the occurrence maths across clock changes, and
when a silence matches."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmpulse import schedule as schedule_module
from llmpulse.alerts.silences import NO_END, Silence, configured_silences
from llmpulse.config import ConfigError, load_config
from llmpulse.schedule import Schedule, ScheduleError, parse_cron, parse_timezone

HOUR = 3600.0
TARGET = "targets:\n  - {provider: vllm, model: m, base_url: 'http://127.0.0.1:1/v1'}\n"
WEEKLY = Schedule("0 2 * * SUN", 2 * HOUR, "Europe/Berlin")


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def load(tmp_path: Path, silences: str) -> list[Silence]:
    path = tmp_path / "llmpulse.yaml"
    path.write_text(TARGET + "silences:\n" + silences)
    return configured_silences(load_config(path, env={}).silences)


# --- the config ---------------------------------------------------------------------------------


def test_a_configured_schedule(tmp_path: Path) -> None:
    (weekly, once) = load(
        tmp_path,
        "  - provider: openai\n"
        "    schedule: {cron: '0 2 * * SUN', duration: 2h, timezone: Europe/Berlin}\n"
        "    comment: weekly deploy\n"
        "  - {rule: 'ttft_*', ends: 2026-12-01T06:00:00Z}\n",
    )
    assert weekly.schedule == WEEKLY
    assert (weekly.starts_at, weekly.ends_at, weekly.provider) == (0.0, NO_END, "openai")
    assert weekly.comment == "weekly deploy" and weekly.id.startswith("config-")
    assert once.schedule is None and once.ends_at == utc(2026, 12, 1, 6)
    # The time zone defaults to UTC; starts and ends bound a schedule.
    (bounded,) = load(
        tmp_path,
        "  - schedule: {cron: '*/15 * * * *', duration: 5m}\n"
        "    starts: 2026-01-01T00:00:00Z\n    ends: 2026-02-01T00:00:00Z\n",
    )
    assert bounded.schedule == Schedule("*/15 * * * *", 300.0, "UTC")
    assert (bounded.starts_at, bounded.ends_at) == (utc(2026, 1, 1), utc(2026, 2, 1))


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "{cron: '0 25 * * SUN', duration: 2h}",
            "silences[0].schedule.cron: not a cron expression: Bad hour",
        ),
        (
            "{cron: '0 2 * *', duration: 2h}",
            "silences[0].schedule.cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4",
        ),
        ("{cron: '0 0 2 * * SUN', duration: 2h}", "silences[0].schedule.cron: expected 5 fields"),
        (
            "{cron: '0 2 * * SUN', duration: 2h, timezone: Mars/Olympus}",
            "silences[0].schedule.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            "{cron: '0 2 * * SUN', duration: 2h, timezone: ../../etc/passwd}",
            "silences[0].schedule.timezone: unknown time zone",
        ),
        ("{cron: '0 2 * * SUN'}", "silences[0].schedule.duration: required key is missing"),
        (
            "{cron: '0 2 * * SUN', duration: 0s}",
            "silences[0].schedule.duration: a duration must be more than 0",
        ),
        (
            "{cron: '0 2 * * SUN', duration: 2h, every: week}",
            "silences[0].schedule.every: unknown key",
        ),
    ],
)
def test_a_bad_schedule_is_one_line_naming_its_key(
    tmp_path: Path, schedule: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"  - provider: openai\n    schedule: {schedule}\n")
    text = str(info.value)
    assert message in text and "\n" not in text


def test_a_silence_needs_an_end_or_a_schedule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"silences\[0\]: a silence needs 'ends'"):
        load(tmp_path, "  - provider: openai\n")


def test_parsing_normalizes_and_refuses() -> None:
    assert parse_cron("  0   2 * *   sun ") == "0 2 * * sun"
    assert parse_timezone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(ScheduleError, match="never occurs"):
        parse_cron("0 0 */20 * 1L")  # the 1st or 21st of a month that is its last Monday
    with pytest.raises(ScheduleError, match="unknown time zone ''"):
        parse_timezone("")


# --- occurrences --------------------------------------------------------------------------------


def windows(s: Schedule, now: float, n: int) -> list[tuple[float, float]]:
    out = []
    for window in s.windows(now):
        out.append(window)
        if len(out) == n:
            return out
    return out


def test_weekly_windows_follow_berlin_time_across_both_clock_changes() -> None:
    # 02:00 Berlin is 01:00 UTC in winter, 00:00 UTC in summer. On 2025-03-30 the clocks skip
    # 02:00-03:00: the window opens when they resume (03:00 CEST = 01:00 UTC), as cron does.
    assert windows(WEEKLY, utc(2025, 3, 22), 3) == [
        (utc(2025, 3, 23, 1), utc(2025, 3, 23, 3)),
        (utc(2025, 3, 30, 1), utc(2025, 3, 30, 3)),
        (utc(2025, 4, 6, 0), utc(2025, 4, 6, 2)),
    ]
    # On 2025-10-26 02:00-03:00 happens twice: one window, from the first 02:00 (CEST), lasting
    # two hours of real time.
    assert windows(WEEKLY, utc(2025, 10, 20), 2) == [
        (utc(2025, 10, 26, 0), utc(2025, 10, 26, 2)),
        (utc(2025, 11, 2, 1), utc(2025, 11, 2, 3)),
    ]


@pytest.mark.parametrize(
    ("now", "window"),
    [
        (utc(2025, 3, 30, 0, 59, 59), None),  # 01:59:59 CET, the hour about to be skipped
        (utc(2025, 3, 30, 1), (utc(2025, 3, 30, 1), utc(2025, 3, 30, 3))),
        (utc(2025, 3, 30, 2, 59, 59) + 0.5, (utc(2025, 3, 30, 1), utc(2025, 3, 30, 3))),
        (utc(2025, 3, 30, 3), None),
        (utc(2025, 10, 26, 0, 30), (utc(2025, 10, 26, 0), utc(2025, 10, 26, 2))),  # 02:30 CEST
        (utc(2025, 10, 26, 1, 30), (utc(2025, 10, 26, 0), utc(2025, 10, 26, 2))),  # 02:30 CET
        (utc(2025, 10, 26, 2), None),
    ],
)
def test_the_window_now_is_in_around_the_clock_changes(
    now: float, window: tuple[float, float] | None
) -> None:
    assert WEEKLY.window(now) == window


def test_overlapping_windows_hold_throughout() -> None:
    hourly = Schedule("0 * * * *", 2 * HOUR)
    assert hourly.window(utc(2026, 1, 1, 5, 30)) == (utc(2026, 1, 1, 5), utc(2026, 1, 1, 7))
    assert windows(hourly, utc(2026, 1, 1, 5, 30), 2)[1] == (utc(2026, 1, 1, 6), utc(2026, 1, 1, 8))


def test_repeated_questions_reuse_the_last_span(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []

    class Counted(schedule_module.CronSim):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            made.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(schedule_module, "CronSim", Counted)
    daily = Schedule("30 4 * * *", 600, "America/New_York")  # a cron no other test uses
    start = utc(2026, 6, 1, 8, 30)  # 04:30 EDT
    for second in range(0, 86400, 60):  # a day of questions, one a minute
        expected = (start, start + 600) if second < 600 else None
        assert daily.window(start + second) == expected
    assert len(made) == 2  # one search back and one forward, for the whole day
    # The next occurrence moves the span on, once.
    assert daily.window(start + 86400) == (start + 86400, start + 86400 + 600)
    assert len(made) == 4
    # A silence of the same cron and zone, however long, shares what was found.
    assert Schedule("30 4 * * *", 60, "America/New_York").window(start + 86430) is not None
    assert len(made) == 4


# --- silences -----------------------------------------------------------------------------------


def test_a_recurring_silence_matches_inside_its_windows_only() -> None:
    s = Silence("w", starts_at=0, ends_at=NO_END, provider="openai", schedule=WEEKLY)
    opens, closes = utc(2025, 4, 6, 0), utc(2025, 4, 6, 2)
    assert not s.matches("availability", "openai/gpt", "openai", opens - 0.001)
    assert s.matches("availability", "openai/gpt", "openai", opens)
    assert s.matches("availability", "openai/gpt", "openai", closes - 0.001)
    assert not s.matches("availability", "openai/gpt", "openai", closes)
    assert not s.matches("availability", "anthropic/c", "anthropic", opens)  # not its provider
    assert s.active(opens) and not s.active(closes)


def test_starts_and_ends_bound_a_schedule() -> None:
    starts, ends = utc(2025, 4, 6, 1), utc(2025, 4, 13, 1)  # inside the 6th's and 13th's windows
    s = Silence("b", starts_at=starts, ends_at=ends, schedule=WEEKLY)
    assert not s.active(starts - 1) and s.active(starts)  # in the 6th's window, once started
    assert s.active(ends - 1) and not s.active(ends)
    assert not s.active(utc(2025, 4, 20, 0, 30))  # ended
    assert s.next_occurrences(utc(2025, 4, 1), 5) == [
        (starts, utc(2025, 4, 6, 2)),
        (utc(2025, 4, 13, 0), ends),
    ]
    assert s.next_occurrences(utc(2025, 4, 6, 1, 30), 1) == [(starts, utc(2025, 4, 6, 2))]
    assert s.next_occurrences(ends, 5) == []


def test_next_occurrences_of_an_open_ended_and_a_one_off_silence() -> None:
    s = Silence("w", starts_at=0, ends_at=NO_END, schedule=WEEKLY)
    assert s.next_occurrences(utc(2025, 4, 6, 1), 2) == [  # the one in progress first
        (utc(2025, 4, 6, 0), utc(2025, 4, 6, 2)),
        (utc(2025, 4, 13, 0), utc(2025, 4, 13, 2)),
    ]
    once = Silence("o", starts_at=100, ends_at=200)
    assert once.next_occurrences(50, 3) == once.next_occurrences(150, 3) == [(100, 200)]
    assert once.next_occurrences(200, 3) == []
    assert once.to_json()["schedule"] is None


def test_json_of_a_recurring_silence() -> None:
    s = Silence("w", starts_at=0, ends_at=NO_END, schedule=WEEKLY)
    data = s.to_json()
    assert data["ends_at"] is None
    assert data["schedule"] == {
        "cron": "0 2 * * SUN",
        "duration_s": 7200.0,
        "timezone": "Europe/Berlin",
    }
    assert Schedule.from_json(data["schedule"]) == WEEKLY
    assert datetime.fromtimestamp(NO_END, UTC) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
