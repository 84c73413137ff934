import dataclasses

import pytest

from llmpulse import catalog
from llmpulse.config import parse_config
from llmpulse.result import Usage
from llmpulse.target import PriceOverride


def target(provider="openai", model="gpt-4o-mini", **extra):
    raw = {"provider": provider, "model": model, "api_key": "os.environ/K", **extra}
    if provider == "bedrock":  # signed with AWS credentials, in a region
        del raw["api_key"]
        raw["region"] = "us-east-1"
    return parse_config({"targets": [raw]}, env={"K": "k"}).targets[0]


def test_cached_tokens_are_priced_at_the_cached_rate():
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per MTok.
    full, _ = catalog.cost_usd(target(), Usage(input_tokens=1000, output_tokens=100))
    cached, _ = catalog.cost_usd(
        target(), Usage(input_tokens=1000, output_tokens=100, cached_tokens=800)
    )
    assert full == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6)
    assert cached == pytest.approx((200 * 0.15 + 800 * 0.075 + 100 * 0.6) / 1e6)
    assert cached < full


def test_anthropic_cache_reads_and_writes():
    usage = Usage(input_tokens=1000, output_tokens=10, cached_tokens=500, cache_write_tokens=100)
    cost, warning = catalog.cost_usd(target("anthropic", "claude-haiku-4-5"), usage)
    # haiku 4.5: $1 input, $0.10 cache read, $1.25 cache write, $5 output.
    assert warning is None
    assert cost == pytest.approx((400 * 1 + 500 * 0.1 + 100 * 1.25 + 10 * 5) / 1e6)


def test_served_snapshot_name_is_tried_when_configured_alias_is_unknown():
    t = dataclasses.replace(target(), model="my-alias")
    cost, warning = catalog.cost_usd(t, Usage(10, 10), served_model="gpt-4o-mini-2024-07-18")
    assert cost is not None and warning is None


def test_unknown_model_gets_no_cost_and_a_warning():
    cost, warning = catalog.cost_usd(target(model="imaginary-model-9"), Usage(10, 10))
    assert cost is None
    assert "not in the price catalogue" in warning


def test_self_hosted_without_prices_warns():
    cost, warning = catalog.cost_usd(
        target("vllm", "llama", base_url="http://127.0.0.1:1/v1"), Usage(10, 10)
    )
    assert cost is None and "set 'prices'" in warning


def test_override_prices_with_catalogue_cached_rate_fallback():
    t = target(prices={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
    cost, _ = catalog.cost_usd(t, Usage(input_tokens=1000, output_tokens=1000, cached_tokens=0))
    assert cost == pytest.approx(0.003)
    cost, _ = catalog.cost_usd(t, Usage(input_tokens=1000, output_tokens=0, cached_tokens=1000))
    assert cost == pytest.approx(1000 * 0.075 / 1e6)  # gpt-4o-mini's catalogue cached rate


def test_override_without_any_cached_rate_refuses_to_guess():
    t = target("vllm", "llama", base_url="http://127.0.0.1:1/v1")
    t = dataclasses.replace(t, prices=PriceOverride(input_per_mtok=1, output_per_mtok=1))
    cost, warning = catalog.cost_usd(t, Usage(input_tokens=100, output_tokens=1, cached_tokens=50))
    assert cost is None and "cached_input_per_mtok" in warning


def test_context_windows():
    assert catalog.context_window(target()) == 128000
    assert catalog.context_window(target(context_window=4096)) == 4096
    assert catalog.context_window(target(model="imaginary-model-9")) is None


def test_every_preset_default_model_has_a_price():
    from llmpulse.presets import PRESETS

    for preset in PRESETS.values():
        if preset.default_model and preset.price_provider:
            # Vertex AI has no key but a project and a location.
            vertex = {"project": "my-project", "location": "us-east5"}
            t = target(
                preset.name, preset.default_model, **(vertex if preset.name == "vertex" else {})
            )
            cost, warning = catalog.cost_usd(t, Usage(input_tokens=100, output_tokens=10))
            assert cost and cost > 0, (preset.name, warning)
