"""Prices and context windows from the maintained genai-prices catalogue, with config overrides.

Cached and cache-write input tokens are priced at their own rates, reasoning tokens as output
(that is how every major provider bills them). A model the catalogue does not know gets no cost
and a warning; we never invent a price.
"""

from __future__ import annotations

import functools
from decimal import Decimal

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from genai_prices.data_snapshot import get_snapshot

from llmpulse.result import Usage
from llmpulse.target import PriceOverride, Target


def cost_usd(
    target: Target, usage: Usage, served_model: str | None = None
) -> tuple[float | None, str | None]:
    """Return (cost, warning). Tries the configured model name, then the served one."""
    if usage.input_tokens is None and usage.output_tokens is None:
        return None, None
    cached = usage.cached_tokens or 0
    written = usage.cache_write_tokens or 0
    if target.prices is not None:
        return _override_cost(target, usage, target.prices, cached, written)
    if target.price_provider is None:
        return (
            None,
            f"no price catalogue for provider {target.provider}; set 'prices' to track cost",
        )
    price_usage = PriceUsage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=cached or None,
        cache_write_tokens=written or None,
    )
    for ref in dict.fromkeys(m for m in (target.model, served_model) if m):
        try:
            calc = calc_price(price_usage, ref, provider_id=target.price_provider)
        except LookupError:
            continue
        return float(calc.total_price), None
    return None, (
        f"model {target.model!r} is not in the price catalogue for {target.provider}; "
        "cost unknown (set 'prices' on the target to track it)"
    )


def context_window(target: Target) -> int | None:
    if target.context_window is not None:
        return target.context_window
    if target.price_provider is None:
        return None
    return _catalogue_window(target.price_provider, target.model)


@functools.lru_cache(maxsize=1024)
def _catalogue_window(provider: str, model: str) -> int | None:
    try:
        _, info = get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    return info.context_window


@functools.lru_cache(maxsize=1024)
def _catalogue_rates(provider: str | None, model: str) -> tuple[float | None, float | None]:
    """The catalogue's (cache read, cache write) rates per MTok, when they are flat numbers."""
    if provider is None:
        return None, None
    try:
        calc = calc_price(PriceUsage(input_tokens=1), model, provider_id=provider)
    except LookupError:
        return None, None
    price = calc.model_price

    def flat(value: object) -> float | None:
        return float(value) if isinstance(value, Decimal | int | float) else None

    return flat(price.cache_read_mtok), flat(price.cache_write_mtok)


def _override_cost(
    target: Target, usage: Usage, prices: PriceOverride, cached: int, written: int
) -> tuple[float | None, str | None]:
    read_rate, write_rate = prices.cached_input_per_mtok, prices.cache_write_per_mtok
    if (cached and read_rate is None) or (written and write_rate is None):
        cat_read, cat_write = _catalogue_rates(target.price_provider, target.model)
        read_rate = read_rate if read_rate is not None else cat_read
        write_rate = write_rate if write_rate is not None else cat_write
    if (cached and read_rate is None) or (written and write_rate is None):
        return None, "cached tokens need 'prices.cached_input_per_mtok' (or cache_write_per_mtok)"
    fresh = max(0, (usage.input_tokens or 0) - cached - written)
    total = (
        fresh * prices.input_per_mtok
        + cached * (read_rate or 0.0)
        + written * (write_rate or 0.0)
        + (usage.output_tokens or 0) * prices.output_per_mtok
    ) / 1_000_000
    return total, None
