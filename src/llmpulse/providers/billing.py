"""A provider's own bill: its organization cost and usage reports, read with an admin key and
summed per UTC day and model (``DayBill``), for the reconciliation job (``monitor.billing``).

Wire formats, as the official documentation and SDKs give them:

- OpenAI (``Authorization: Bearer`` admin key): ``GET /v1/organization/costs`` with
  ``start_time``/``end_time`` (Unix seconds), ``bucket_width=1d``, ``group_by[]=line_item``,
  ``limit`` (buckets, at most 180) and ``page`` (the previous ``next_page``); the page is
  ``{object: "page", data: [{object: "bucket", start_time, end_time, results: [{object:
  "organization.costs.result", amount: {value, currency}, line_item, ...}]}], has_more,
  next_page}``, amounts in dollars. A line item names the model first, e.g. ``"gpt-4o,
  input_tokens"``. ``GET /v1/organization/usage/completions`` (``group_by[]=model``, ``limit``
  at most 31 daily buckets) gives ``input_tokens`` (cached included), ``output_tokens`` and
  ``num_model_requests`` per model. Sources: openai-python ``resources/admin/organization/
  usage.py`` and ``types/admin/organization/usage_costs_response.py``;
  https://platform.openai.com/docs/api-reference/usage/costs
- Anthropic (``x-api-key`` admin key, ``anthropic-version: 2023-06-01``): ``GET
  /v1/organizations/cost_report`` with ``starting_at``/``ending_at`` (RFC 3339),
  ``bucket_width=1d``, ``group_by[]=description`` (which fills ``model``), ``limit`` (at most
  31) and ``page``; ``{data: [{starting_at, ending_at, results: [{amount, currency, model,
  description, cost_type, token_type, ...}]}], has_more, next_page}`` where ``amount`` is a
  decimal string in cents ("123.45" is $1.2345). ``GET /v1/organizations/usage_report/messages``
  (``group_by[]=model``) gives ``uncached_input_tokens``, ``cache_read_input_tokens``,
  ``cache_creation.{ephemeral_1h_input_tokens, ephemeral_5m_input_tokens}`` and
  ``output_tokens``; it counts no requests. Sources:
  https://platform.claude.com/docs/en/api/admin/cost_report/retrieve,
  https://platform.claude.com/docs/en/api/admin/usage_report/retrieve_messages,
  https://docs.claude.com/en/docs/build-with-claude/usage-cost-api

Every answer is read capped in bytes, every page count bounded; whatever goes wrong is a
``ReportError`` of an ``ErrorClass``, its text redacted.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp

from llmpulse.config.billing import MAX_DAYS, BillingSource
from llmpulse.errors import ErrorClass
from llmpulse.http import MAX_ERROR_BODY_BYTES, read_capped
from llmpulse.secrets import Redactor, one_line

MAX_REPORT_BYTES = 8 << 20  # a month of daily buckets per model is a few hundred kB
MAX_PAGES = 64  # a cursor that never ends is a broken provider, not more data
MAX_NAME_CHARS = 120  # a model name or line item, as kept
MAX_MODELS = 200  # names a day keeps apart; the rest are summed under OTHER
OTHER = "(other)"
REQUEST_TIMEOUT_S = 60.0
ANTHROPIC_VERSION = "2023-06-01"


@dataclasses.dataclass(slots=True)
class ModelFigures:
    """One model's day on the provider's bill: dollars from the cost report, tokens (input
    with cached and cache-write tokens, as llmpulse counts them) from the usage report."""

    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int | None = None  # Anthropic's usage report counts no requests


@dataclasses.dataclass(slots=True)
class DayBill:
    """The provider's figures for one UTC day; ``models`` by the name it reports (dated ids
    such as ``gpt-4o-2024-08-06``; a cost without a model under its line item or
    description)."""

    day: date
    total_usd: float = 0.0
    models: dict[str, ModelFigures] = dataclasses.field(default_factory=dict)

    def model(self, name: str) -> ModelFigures:
        if name not in self.models and len(self.models) >= MAX_MODELS:
            name = OTHER
        return self.models.setdefault(name, ModelFigures())


class ReportError(Exception):
    """A report that could not be read: its class (auth, server_error, protocol, ...) and a
    redacted one-line message."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message


async def read_bill(
    session: aiohttp.ClientSession,
    source: BillingSource,
    first: date,
    end: date,
    redactor: Redactor,
) -> dict[date, DayBill]:
    """The provider's bill for each UTC day ``first <= day < end`` (at most ``MAX_DAYS``):
    every day of the range, a day without spend at $0."""
    if not first < end or (end - first).days > MAX_DAYS:
        raise ValueError(f"a range of 1 to {MAX_DAYS} days, got {first}..{end}")
    days = [first + timedelta(days=i) for i in range((end - first).days)]
    bills = {day: DayBill(day) for day in days}
    reader = _Reader(session, source, redactor)
    if source.provider == "openai":
        await _openai(reader, first, end, bills)
    elif source.provider == "anthropic":
        await _anthropic(reader, first, end, bills)
    else:
        raise ValueError(f"no reports are read for provider {source.provider!r}")
    return bills


# --- OpenAI --------------------------------------------------------------------------------


async def _openai(reader: _Reader, first: date, end: date, bills: dict[date, DayBill]) -> None:
    span = {"start_time": _epoch(first), "end_time": _epoch(end), "bucket_width": "1d"}
    days = (end - first).days
    costs = await reader.pages(
        "/v1/organization/costs", {**span, "group_by[]": "line_item", "limit": days}
    )
    for day, result in _buckets(costs, _openai_day, bills):
        amount = _field(result, "amount", dict, required=False) or {}
        currency = amount.get("currency")
        if currency is not None and str(currency).lower() != "usd":
            raise ReportError(ErrorClass.PROTOCOL, f"a cost in {currency!r}, not USD")
        value = _number(amount.get("value", 0), "amount.value")
        line_item = _field(result, "line_item", str, required=False) or "unattributed"
        # "gpt-4o-2024-08-06, input_tokens": the model, then what of it was billed.
        bills[day].model(reader.name(line_item.split(", ", 1)[0])).cost_usd += value
        bills[day].total_usd += value
    usage = await reader.pages(
        "/v1/organization/usage/completions", {**span, "group_by[]": "model", "limit": days}
    )
    for day, result in _buckets(usage, _openai_day, bills):
        model = _field(result, "model", str, required=False) or "unattributed"
        figures = bills[day].model(reader.name(model))
        figures.input_tokens += _count(result, "input_tokens")
        figures.output_tokens += _count(result, "output_tokens")
        figures.requests = (figures.requests or 0) + _count(result, "num_model_requests")


def _openai_day(bucket: dict[str, Any]) -> date:
    start = _number(bucket.get("start_time"), "start_time")
    try:
        return datetime.fromtimestamp(start, UTC).date()
    except (ValueError, OverflowError, OSError):  # a time before year 1 or after 9999
        raise ReportError(ErrorClass.PROTOCOL, f"start_time {start:g} is out of range") from None


# --- Anthropic -----------------------------------------------------------------------------


async def _anthropic(reader: _Reader, first: date, end: date, bills: dict[date, DayBill]) -> None:
    span = {"starting_at": _rfc3339(first), "ending_at": _rfc3339(end), "bucket_width": "1d"}
    days = (end - first).days
    costs = await reader.pages(
        "/v1/organizations/cost_report", {**span, "group_by[]": "description", "limit": days}
    )
    for day, result in _buckets(costs, _anthropic_day, bills):
        currency = result.get("currency")
        if currency is not None and str(currency).upper() != "USD":
            raise ReportError(ErrorClass.PROTOCOL, f"a cost in {currency!r}, not USD")
        # A decimal string in cents: "123.45" is $1.2345.
        value = _number(_field(result, "amount", str), "amount") / 100
        name = (
            _field(result, "model", str, required=False)
            or _field(result, "description", str, required=False)
            or "unattributed"
        )
        bills[day].model(reader.name(name)).cost_usd += value
        bills[day].total_usd += value
    usage = await reader.pages(
        "/v1/organizations/usage_report/messages",
        {**span, "group_by[]": "model", "limit": days},
    )
    for day, result in _buckets(usage, _anthropic_day, bills):
        model = _field(result, "model", str, required=False) or "unattributed"
        figures = bills[day].model(reader.name(model))
        creation = _field(result, "cache_creation", dict, required=False) or {}
        figures.input_tokens += (
            _count(result, "uncached_input_tokens")
            + _count(result, "cache_read_input_tokens", required=False)
            + _count(creation, "ephemeral_1h_input_tokens", required=False)
            + _count(creation, "ephemeral_5m_input_tokens", required=False)
        )
        figures.output_tokens += _count(result, "output_tokens")


def _anthropic_day(bucket: dict[str, Any]) -> date:
    text = _field(bucket, "starting_at", str)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).date()
    except ValueError:
        message = f"starting_at {text[:40]!r} is no RFC 3339 time"
        raise ReportError(ErrorClass.PROTOCOL, message) from None


# --- reading pages -------------------------------------------------------------------------


class _Reader:
    def __init__(
        self, session: aiohttp.ClientSession, source: BillingSource, redactor: Redactor
    ) -> None:
        self.session, self.source, self.redact = session, source, redactor
        if source.provider == "anthropic":
            self.headers = {"x-api-key": source.admin_key, "anthropic-version": ANTHROPIC_VERSION}
        else:
            self.headers = {"Authorization": f"Bearer {source.admin_key}"}

    def name(self, raw: str) -> str:
        """A model name or line item as kept: outside text, so redacted, one line, short."""
        return one_line(self.redact(raw))[:MAX_NAME_CHARS] or "unattributed"

    async def pages(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every page of ``path``, following ``next_page`` while ``has_more``."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        query = {k: str(v) for k, v in params.items()}
        for _ in range(MAX_PAGES):
            page = await self.get(path, query)
            out.append(page)
            cursor = page.get("next_page")
            if not page.get("has_more") or not cursor:
                return out
            if not isinstance(cursor, str) or cursor in seen:
                raise ReportError(ErrorClass.PROTOCOL, f"{path}: a next_page cursor repeats")
            seen.add(cursor)
            query["page"] = cursor
        raise ReportError(ErrorClass.PROTOCOL, f"{path}: more than {MAX_PAGES} pages")

    async def get(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        url = self.source.base_url + path
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        try:
            async with self.session.get(
                url, params=query, headers=self.headers, timeout=timeout, allow_redirects=False
            ) as response:
                if response.status != 200:
                    body = await read_capped(response, MAX_ERROR_BODY_BYTES, truncate=True)
                    raise ReportError(
                        _status_class(response.status),
                        f"{path}: HTTP {response.status}{self._detail(body)}",
                    )
                raw = await read_capped(
                    response,
                    MAX_REPORT_BYTES,
                    too_large=lambda m: ReportError(ErrorClass.PROTOCOL, f"{path}: {m}"),
                )
        except TimeoutError:
            raise ReportError(
                ErrorClass.TIMEOUT, f"{path}: no answer within {REQUEST_TIMEOUT_S:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ReportError(
                ErrorClass.CONNECTION, self.redact.clipped(f"{path}: {type(exc).__name__}: {exc}")
            ) from None
        try:
            page = json.loads(raw)
        except (ValueError, RecursionError):
            raise ReportError(ErrorClass.PROTOCOL, f"{path}: the answer is not JSON") from None
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise ReportError(ErrorClass.PROTOCOL, f"{path}: the answer has no 'data' list")
        return page

    def _detail(self, body: bytes) -> str:
        """The provider's error message, redacted and on one line: ``: message``."""
        try:
            error = json.loads(body).get("error")
        except (ValueError, AttributeError, RecursionError):
            return ""
        message = error.get("message") if isinstance(error, dict) else None
        return f": {self.redact.clipped(message)}" if isinstance(message, str) else ""


def _status_class(status: int) -> ErrorClass:
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status in (503, 529):
        return ErrorClass.UNAVAILABLE
    if status >= 500:
        return ErrorClass.SERVER_ERROR
    return ErrorClass.BAD_REQUEST


def _buckets(
    pages: list[dict[str, Any]],
    day_of: Callable[[dict[str, Any]], date],
    bills: dict[date, DayBill],
) -> Iterator[tuple[date, dict[str, Any]]]:
    """``(day, result)`` of every result in a bucket of the range."""
    for page in pages:
        for bucket in page["data"]:
            if not isinstance(bucket, dict):
                raise ReportError(ErrorClass.PROTOCOL, "a bucket is not an object")
            day = day_of(bucket)
            results = _field(bucket, "results", list)
            if day not in bills:
                continue  # the provider's bucket edges are its own; only asked-for days count
            for result in results:
                if not isinstance(result, dict):
                    raise ReportError(ErrorClass.PROTOCOL, "a result is not an object")
                yield day, result


def _field(obj: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise ReportError(ErrorClass.PROTOCOL, f"{name!r} is not a {kind.__name__}")
    return value


def _number(value: Any, name: str) -> float:
    try:
        number = float(value) if isinstance(value, str | int | float) else math.nan
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ReportError(ErrorClass.PROTOCOL, f"{name!r} is not a number")
    return number


def _count(obj: dict[str, Any], name: str, *, required: bool = True) -> int:
    value = obj.get(name)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReportError(ErrorClass.PROTOCOL, f"{name!r} is not a count")
    return value


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _rfc3339(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"
