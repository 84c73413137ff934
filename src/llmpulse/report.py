"""Rendering results for people (a rich table) and for programs (the JSON contract)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmpulse.result import CheckResult


def to_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([r.to_json() for r in results], indent=2)


def print_table(results: Sequence[CheckResult], console: Console) -> None:
    table = Table(show_lines=False, header_style="bold")
    for column, justify in (
        ("Target", "left"), ("Check", "left"), ("Status", "left"), ("HTTP", "right"),
        ("TTFT", "right"), ("Tok/s", "right"), ("Latency", "right"), ("Tokens in/out", "right"),
        ("Cost $", "right"), ("Headroom", "right"), ("Served model", "left"),
    ):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in results:
        table.add_row(
            r.target,
            str(r.check),
            _status(r),
            str(r.http_status or "—"),
            _ms(r.ttft_ms),
            f"{r.tokens_per_s:.1f}" if r.tokens_per_s is not None else "—",
            _ms(r.latency_ms),
            _tokens(r),
            f"{r.cost_usd:.6f}" if r.cost_usd is not None else "—",
            _headroom(r),
            r.response_model or "—",
        )
    console.print(table)
    notes = [(r, msg, "red") for r in results if r.error_message for msg in [r.error_message]] + [
        (r, w, "yellow") for r in results for w in r.warnings
    ]
    for r, message, style in notes:
        console.print(Text(f"{r.target} {r.check}: ", style="bold") + Text(message, style=style))
    failed = sum(not r.ok for r in results)
    summary = f"{len(results) - failed}/{len(results)} checks passed"
    console.print(Text(summary, style="green" if not failed else "red bold"))


def _status(r: CheckResult) -> Text:
    if r.ok:
        return Text("ok", style="green")
    return Text(str(r.error_class), style="yellow" if r.error_class == "rate_limited" else "red")


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}ms" if value < 10_000 else f"{value / 1000:.1f}s"


def _tokens(r: CheckResult) -> str:
    u = r.usage
    if u.input_tokens is None and u.output_tokens is None:
        return "—"
    text = f"{u.input_tokens if u.input_tokens is not None else '?'}/"
    text += f"{u.output_tokens if u.output_tokens is not None else '?'}"
    return text + ("~" if u.estimated else "")


def _headroom(r: CheckResult) -> str:
    if r.ratelimit is None or r.ratelimit.utilization is None:
        return "—"
    return f"{(1 - r.ratelimit.utilization) * 100:.0f}%"
