"""The providers' own bills as their admin APIs serve them, from configured figures: OpenAI's
organization Costs and Usage (completions) APIs and Anthropic's cost and messages usage reports,
with their authentication, daily buckets and pagination (``has_more`` / ``next_page``), so the
reconciliation job is tested end to end.

A scenario's ``billing.openai`` / ``billing.anthropic`` give the admin keys accepted and, per
UTC day, each model's dollars and tokens; a ``fault`` turns every answer into an error, garbage
or an endless body. Wire formats as the official documentation gives them (see
``llmpulse.providers.billing``, which this module does not share code with).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from llmpulse.sim.scenario import ModelBill, ProviderBill

_MIB = 1 << 20
_MAX_DAYS = 366  # a range asked for: more is a 400, as a real API bounds it


Kind = Literal["costs", "usage"]


class BillingApi:
    """Request handlers over the scenario's bills (``bills()`` gives the current ones)."""

    def __init__(self, bills: Callable[[], dict[str, ProviderBill]]) -> None:
        self.bills = bills
        self.log: list[tuple[str, dict[str, list[str]]]] = []  # (path, query) of each request

    async def openai_costs(self, request: Request) -> Response:
        return self._serve(request, "openai", "costs")

    async def openai_usage(self, request: Request) -> Response:
        return self._serve(request, "openai", "usage")

    async def anthropic_costs(self, request: Request) -> Response:
        return self._serve(request, "anthropic", "costs")

    async def anthropic_usage(self, request: Request) -> Response:
        return self._serve(request, "anthropic", "usage")

    def _serve(self, request: Request, provider: str, kind: Kind) -> Response:
        query: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            query.setdefault(name.removesuffix("[]"), []).append(value)
        self.log.append((request.url.path, query))
        bill = self.bills().get(provider)
        error = _error_maker(provider)
        if bill is None:
            return error(404, "not_found", "this organization has no admin API here")
        if provider == "anthropic":
            key = request.headers.get("x-api-key")
            if not request.headers.get("anthropic-version"):
                return error(400, "invalid_request_error", "anthropic-version header is required")
        else:
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if key not in bill.admin_keys:
            return error(401, "authentication_error", "invalid admin API key")
        if bill.fault == "error_500":
            return error(500, "api_error", "Internal server error")
        if bill.fault == "rate_limited":
            return error(429, "rate_limit_error", "Rate limited")
        if bill.fault == "garbage_body":
            return Response(b'{"data": [{"start_ti', 200, media_type="application/json")
        if bill.fault == "huge_body":
            size = int(bill.huge_body_mb * _MIB)
            return StreamingResponse(_huge(size), 200, media_type="application/json")
        try:
            days, page = _range(provider, kind, query)
        except ValueError as exc:
            return error(400, "invalid_request_error", str(exc))
        shown = days[page : page + bill.page_size]
        more = page + len(shown) < len(days)
        render = _RENDER[(provider, kind)]
        grouped = set(query.get("group_by", []))
        data = [render(day, bill.days.get(day, {}), grouped) for day in shown]
        body: dict[str, Any] = {
            "data": data,
            "has_more": more,
            "next_page": f"page_{page + len(shown)}" if more else None,
        }
        if provider == "openai":
            body = {"object": "page", **body}
        return JSONResponse(body)


def _error_maker(provider: str) -> Callable[[int, str, str], Response]:
    def make(status: int, kind: str, message: str) -> Response:
        if provider == "anthropic":
            body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return JSONResponse(body, status)

    return make


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _range(provider: str, kind: Kind, query: dict[str, list[str]]) -> tuple[list[date], int]:
    """The days asked for and the page's first index among them."""
    if (_one(query, "bucket_width") or "1d") != "1d":
        raise ValueError("only bucket_width=1d is served here")
    if provider == "openai":
        start_s, end_s = _one(query, "start_time"), _one(query, "end_time")
        if start_s is None or not start_s.isdigit() or (end_s is not None and not end_s.isdigit()):
            raise ValueError("start_time (and end_time) must be Unix seconds")
        start = datetime.fromtimestamp(int(start_s), UTC)
        end = datetime.fromtimestamp(int(end_s), UTC) if end_s else None
        top = 180 if kind == "costs" else 31
    else:
        start_t, end_t = _one(query, "starting_at"), _one(query, "ending_at")
        if start_t is None:
            raise ValueError("starting_at is required")
        start = _rfc3339(start_t)
        end = _rfc3339(end_t) if end_t else None
        top = 31
    limit_s = _one(query, "limit") or "7"
    if not limit_s.isdigit() or not 1 <= int(limit_s) <= top:
        raise ValueError(f"limit must be between 1 and {top}")
    first = start.date()
    last = (end - timedelta(microseconds=1)).date() if end else first + timedelta(int(limit_s) - 1)
    count = (last - first).days + 1
    if not 0 < count <= _MAX_DAYS:
        raise ValueError("the range must cover 1 to 366 days")
    page_s = _one(query, "page") or "page_0"
    index = page_s.removeprefix("page_")
    if not index.isdigit() or int(index) >= count:
        raise ValueError("page is not a cursor of this query")
    return [first + timedelta(days=i) for i in range(count)], int(index)


def _rfc3339(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp") from None


def _split(bill: ModelBill) -> tuple[float, float]:
    """The day's dollars as input and output line items, by their tokens."""
    tokens = bill.input_tokens + bill.output_tokens
    inputs = bill.cost_usd * bill.input_tokens / tokens if tokens else bill.cost_usd / 2
    return inputs, bill.cost_usd - inputs


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _openai_costs(day: date, models: dict[str, ModelBill], grouped: set[str]) -> dict[str, Any]:
    def item(value: float, line_item: str | None) -> dict[str, Any]:
        return {
            "object": "organization.costs.result",
            "amount": {"value": value, "currency": "usd"},
            "line_item": line_item,
            "project_id": None,
        }

    if "line_item" in grouped:
        results = []
        for name, bill in models.items():
            inputs, outputs = _split(bill)
            results.append(item(inputs, f"{name}, input_tokens"))
            results.append(item(outputs, f"{name}, output_tokens"))
    else:
        results = [item(sum(b.cost_usd for b in models.values()), None)] if models else []
    return {"object": "bucket", "start_time": _epoch(day), "end_time": _epoch(day) + 86400,
            "results": results}  # fmt: skip


def _openai_usage(day: date, models: dict[str, ModelBill], grouped: set[str]) -> dict[str, Any]:
    def item(name: str | None, bills: list[ModelBill]) -> dict[str, Any]:
        return {
            "object": "organization.usage.completions.result",
            "input_tokens": sum(b.input_tokens for b in bills),
            "output_tokens": sum(b.output_tokens for b in bills),
            "input_cached_tokens": sum(b.cached_tokens for b in bills),
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "num_model_requests": sum(b.requests for b in bills),
            "project_id": None,
            "user_id": None,
            "api_key_id": None,
            "model": name,
            "batch": None,
        }

    if "model" in grouped:
        results = [item(name, [bill]) for name, bill in models.items()]
    else:
        results = [item(None, list(models.values()))] if models else []
    return {"object": "bucket", "start_time": _epoch(day), "end_time": _epoch(day) + 86400,
            "results": results}  # fmt: skip


def _cents(usd: float) -> str:
    # A decimal string in cents, as Anthropic writes it: "123.45" is $1.2345.
    return f"{usd * 100:.6f}"


def _anthropic_costs(day: date, models: dict[str, ModelBill], grouped: set[str]) -> dict[str, Any]:
    def item(usd: float, model: str | None, token_type: str | None) -> dict[str, Any]:
        what = {"uncached_input_tokens": "Input Tokens", "output_tokens": "Output Tokens"}
        return {
            "amount": _cents(usd),
            "currency": "USD",
            "cost_type": "tokens" if model else None,
            "description": f"{model} Usage - {what[token_type]}" if model and token_type else None,
            "model": model,
            "service_tier": "standard" if model else None,
            "token_type": token_type,
            "context_window": "0-200k" if model else None,
            "workspace_id": None,
        }

    if "description" in grouped:
        results = []
        for name, bill in models.items():
            inputs, outputs = _split(bill)
            results += [
                item(inputs, name, "uncached_input_tokens"),
                item(outputs, name, "output_tokens"),
            ]
    else:
        results = [item(sum(b.cost_usd for b in models.values()), None, None)] if models else []
    return _anthropic_bucket(day, results)


def _anthropic_usage(day: date, models: dict[str, ModelBill], grouped: set[str]) -> dict[str, Any]:
    def item(name: str | None, bills: list[ModelBill]) -> dict[str, Any]:
        cached = sum(b.cached_tokens for b in bills)
        return {
            "api_key_id": None,
            "workspace_id": None,
            "model": name,
            "service_tier": None,
            "context_window": None,
            "uncached_input_tokens": sum(b.input_tokens for b in bills) - cached,
            "cache_read_input_tokens": cached,
            "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
            "output_tokens": sum(b.output_tokens for b in bills),
            "server_tool_use": {"web_search_requests": 0},
        }

    if "model" in grouped:
        results = [item(name, [bill]) for name, bill in models.items()]
    else:
        results = [item(None, list(models.values()))] if models else []
    return _anthropic_bucket(day, results)


def _anthropic_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return {
        "starting_at": start.isoformat().replace("+00:00", "Z"),
        "ending_at": (start + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "results": results,
    }


_RENDER: dict[tuple[str, Kind], Callable[[date, dict[str, ModelBill], set[str]], Any]] = {
    ("openai", "costs"): _openai_costs,
    ("openai", "usage"): _openai_usage,
    ("anthropic", "costs"): _anthropic_costs,
    ("anthropic", "usage"): _anthropic_usage,
}


async def _huge(size: int) -> AsyncIterator[bytes]:
    """A JSON page that never seems to end: ``size`` bytes of one long string."""
    yield b'{"data": [], "padding": "'
    pad = b"x" * _MIB
    for _ in range(size // _MIB):
        yield pad
    yield b'"}'
