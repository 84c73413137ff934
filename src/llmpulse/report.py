"""Rendering results for people (a rich table) and for programs (the JSON contract)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmpulse.result import CheckResult


def to_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([r.to_json() for r in results], indent=2)


def print_table(results: Sequence[CheckResult], console: Console) -> None:
    """One row per check; errors and warnings follow the table in full."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    # Status and figures never wrap; names give way (ellipsis) on a narrow terminal.
    table.add_column("Target", overflow="ellipsis", ratio=2)
    table.add_column("Check", no_wrap=True)
    table.add_column("Status", no_wrap=True, min_width=14)
    for header in ("HTTP", "TTFT", "Tok/s", "Latency", "Tokens", "Cost $", "Headroom"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Served model", overflow="ellipsis", ratio=2)
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
            _cost(r.cost_usd),
            _headroom(r),
            r.response_model or "—",
        )
    console.print(table)
    for r in results:
        if r.error_message:
            head = Text(f"{r.target} {r.check} {r.error_class}: ", style="bold")
            console.print(head + Text(r.error_message, style="red"))
        for warning in r.warnings:
            head = Text(f"{r.target} {r.check}: ", style="bold")
            console.print(head + Text(warning, style="yellow"))
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


def _cost(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if value >= 0.01 else f"{value:.2e}"


def _headroom(r: CheckResult) -> str:
    if r.ratelimit is None or r.ratelimit.utilization is None:
        return "—"
    return f"{(1 - r.ratelimit.utilization) * 100:.0f}%"
