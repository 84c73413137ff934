"""Gateway keys: the config forms (plain and mapping entries, teams, budgets) and the run-time
keys the results store keeps as digests, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest

from llmpulse.config import ConfigError
from llmpulse.config.keys import Budget, GatewayKey, Period, Team, key_digest, plain_key_name
from llmpulse.config.litellm import parse_gateway
from llmpulse.store.keys import StoredKey
from test_store import Backend, backend_at

MODELS = [
    {"model_name": "chat", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-p"}},
    {"model_name": "fb-*", "litellm_params": {"model": "openai/fb-*", "api_key": "sk-p"}},
    {"model_name": "openai/*", "litellm_params": {"model": "openai/*", "api_key": "sk-p"}},
]
ENV = {
    "SEARCH_KEY": "sk-search-secret",
    "PLAIN_KEY": "sk-plain-secret",
    "SAME_KEY": "sk-plain-secret",
}


def gateway(keys: list[Any], **raw: Any):
    doc = {
        "model_list": MODELS,
        "router_settings": {"model_group_alias": {"gpt": "chat"}},
        "gateway": {"keys": keys},
        **raw,
    }
    config = parse_gateway(doc, env=ENV)
    assert config is not None
    return config


def test_mapping_and_plain_keys_side_by_side() -> None:
    config = gateway(
        [
            "os.environ/PLAIN_KEY",
            {
                "name": "search-backend",
                "key": "os.environ/SEARCH_KEY",
                "team": "search",
                "models": ["chat", "fb-*"],
                "rpm": 600,
                "tpm": 200000,
                "budget": {"max_usd": 50, "period": "30d", "warn_at": "80%"},
            },
            {"name": "batch-jobs", "team": "offline", "models": ["gpt"], "drill": True},
        ],
        general_settings={"master_key": "sk-master"},
        teams=[{"name": "search", "budget": {"max_usd": 500, "period": "1mo"}}],
    )
    master, plain, search, policy = config.settings.keys
    assert master == GatewayKey("master", key_digest("sk-master"), master=True)
    digest = key_digest("sk-plain-secret")
    assert (plain.name, plain.digest, plain.models) == (plain_key_name(digest), digest, ())
    assert search == GatewayKey(
        "search-backend", key_digest("sk-search-secret"), "search", ("chat", "fb-*"), 600,
        200000, Budget(50.0, Period.DAYS_30, 0.8),
    )  # fmt: skip
    # Without `key`: the policy of the run-time key of that name, known by no digest.
    assert (policy.name, policy.digest, policy.team, policy.secret) == ("batch-jobs", "", "offline", None)  # fmt: skip
    # Live drills: granted by drill: true (here a run-time key's policy), always the master's.
    assert policy.drill and policy.may_drill and master.may_drill and not master.drill
    assert not search.drill and not search.may_drill
    # A team need not be declared (`teams:` adds budgets): "offline" is not.
    assert config.teams == (Team("search", Budget(500.0, Period.MONTH, 0.8)),)
    # Every key's text is a secret the redactor is given; no policy has any.
    assert set(config.secrets) >= {"sk-master", "sk-plain-secret", "sk-search-secret"}


def test_a_key_may_use_its_groups_their_aliases_and_wildcard_models() -> None:
    key = GatewayKey("k", "d", models=("chat", "fb-*", "openai/gpt-4o"))
    assert key.allows("chat") and key.allows("gpt", "chat")  # an alias of an allowed group
    assert key.allows("fb-llama") and key.allows("openai/gpt-4o")
    assert not key.allows("openai/gpt-4o-mini") and not key.allows("other")
    assert GatewayKey("all", "d").allows("anything")
    # Given only the alias, the group itself under its own name is not allowed.
    assert not GatewayKey("k", "d", models=("gpt",)).allows("chat", "chat")


@pytest.mark.parametrize(
    "models",
    [["chat"], ["gpt"], ["fb-*"], ["fb-llama-3"], ["openai/gpt-4o"], ["c*"], ["openai/*"]],
)
def test_models_may_name_groups_aliases_globs_and_wildcard_models(models: list[str]) -> None:
    (key,) = gateway(
        [{"name": "k", "key": "os.environ/SEARCH_KEY", "models": models}]
    ).settings.keys
    assert key.models == tuple(models)


def test_models_naming_no_group_is_a_one_line_error_with_its_path() -> None:
    keys = ["os.environ/PLAIN_KEY", {"name": "a", "models": ["chat"]}]
    keys.append({"name": "b", "models": ["chat", "gtp-4"]})
    with pytest.raises(ConfigError) as info:
        gateway(keys)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("gateway.keys[2].models[1]: 'gtp-4' names no model group")
    assert "chat" in message


def test_an_empty_key_entry_does_not_shift_the_paths_of_the_entries_after_it() -> None:
    with pytest.raises(ConfigError, match=r"^gateway\.keys\[1\]\.models\[0\]: 'nope'"):
        parse_gateway(
            {"model_list": MODELS, "gateway": {"keys": [None, {"name": "x", "models": ["nope"]}]}},
            env={},
        )  # fmt: skip


@pytest.mark.parametrize(
    ("keys", "general", "expected"),
    [
        ([{"name": "a"}, {"name": "a", "team": "t"}], {}, r"gateway\.keys\[1\]\.name: 'a' names two keys"),
        ([{"name": "master"}], {"master_key": "sk-m"}, r"gateway\.keys\[0\]\.name: 'master' names two keys"),
        (["os.environ/PLAIN_KEY", {"name": "b", "key": "os.environ/PLAIN_KEY"}], {}, r"gateway\.keys\[1\]: the same key as 'key-"),
        ([{"name": "has space"}], {}, r"gateway\.keys\[0\]\.name"),
        ([{"name": "a", "rpm": 0}], {}, r"gateway\.keys\[0\]\.rpm"),
        ([{"name": "a", "models": [""]}], {}, r"gateway\.keys\[0\]\.models"),
        ([{"name": "a", "budget": {"max_usd": 0}}], {}, r"gateway\.keys\[0\]\.budget\.max_usd"),
        ([{"name": "a", "budget": {"max_usd": 5, "period": "2w"}}], {}, r"gateway\.keys\[0\]\.budget\.period"),
        ([{"name": "a", "budget": {"max_usd": 5, "warn_at": "120%"}}], {}, r"gateway\.keys\[0\]\.budget\.warn_at"),
        ([{"name": "a", "budget": {"max_usd": 5, "warn_at": "lots"}}], {}, r"gateway\.keys\[0\]\.budget\.warn_at"),
        ([{"name": "a", "budget": {"max_usd": 5, "warn_at": 0}}], {}, r"gateway\.keys\[0\]\.budget\.warn_at"),
        ([{"name": "a", "budjet": {}}], {}, r"gateway\.keys\[0\]\.budjet"),
        ([{"name": "a", "team": "two\nlines"}], {}, r"gateway\.keys\[0\]\.team: must be printable"),
        ([{"name": "a", "models": ["x" * 300]}], {}, r"gateway\.keys\[0\]\.models: a model group name is unprintable or over 256"),
        ([{"name": "a", "models": ["chat"] * 1001}], {}, r"gateway\.keys\[0\]\.models: List should have at most 1000"),
        ([{"name": "a", "drill": "yes"}], {}, r"gateway\.keys\[0\]\.drill: Input should be a valid boolean"),
        ([{"name": "a", "drill": 1}], {}, r"gateway\.keys\[0\]\.drill: Input should be a valid boolean"),
    ],
)  # fmt: skip
def test_bad_key_entries_name_their_path(
    keys: list[Any], general: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        gateway(keys, general_settings=general)
    assert "\n" not in str(info.value).strip()


def test_a_plain_key_listed_twice_or_as_the_master_key_still_loads() -> None:
    """Valid before keys had names: a plain entry repeating a plain or the master key adds
    nothing and is dropped (one key, the master's powers kept); beside a named key it is
    still refused, as its policy would be ambiguous."""
    twice = gateway(["os.environ/PLAIN_KEY", "os.environ/SAME_KEY"])
    assert [k.digest for k in twice.settings.keys] == [key_digest("sk-plain-secret")]
    master = gateway(["os.environ/PLAIN_KEY"], general_settings={"master_key": "sk-plain-secret"})
    assert [(k.name, k.master) for k in master.settings.keys] == [("master", True)]
    with pytest.raises(ConfigError, match=r"gateway\.keys\[1\]: the same key as 'b'"):
        gateway([{"name": "b", "key": "os.environ/PLAIN_KEY"}, "os.environ/PLAIN_KEY"])


def test_duplicate_or_unprintable_teams_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"teams\[1\]\.name: 'a' is declared twice"):
        gateway([], teams=[{"name": "a"}, {"name": "a"}])
    with pytest.raises(ConfigError, match=r"teams\[0\]\.name: must be printable"):
        gateway([], teams=[{"name": "a\tb"}])


@pytest.mark.parametrize(
    ("written", "fraction"), [("80%", 0.8), (0.8, 0.8), ("0.5", 0.5), ("100%", 1.0), (None, None), (1, 1.0)]
)  # fmt: skip
def test_budget_warn_at_as_a_percentage_or_a_fraction(written: Any, fraction: float | None) -> None:
    budget = {"max_usd": 50, "period": "7d", "warn_at": written}
    (key,) = gateway([{"name": "a", "budget": budget}]).settings.keys
    assert key.budget == Budget(50.0, Period.WEEK, fraction)


def test_budget_defaults_to_30_days_warning_at_80_percent() -> None:
    (key,) = gateway([{"name": "a", "budget": {"max_usd": 1.5}}]).settings.keys
    assert key.budget == Budget(1.5, Period.DAYS_30, 0.8)


def test_periods_roll_or_follow_the_calendar_month() -> None:
    now = 1_709_251_200.0 + 3600  # 2024-03-01 01:00 UTC (2024 is a leap year)
    assert Period.DAY.start(now) == now - 86400 and Period.DAY.end(now) == now
    assert Period.WEEK.start(now) == now - 7 * 86400
    assert Period.DAYS_30.start(now) == now - 30 * 86400
    assert Period.MONTH.start(now) == 1_709_251_200.0
    assert Period.MONTH.end(now) == 1_709_251_200.0 + 31 * 86400  # April 1st
    feb = 1_706_745_600.0 + 10 * 86400  # 2024-02-11
    assert Period.MONTH.start(feb) == 1_706_745_600.0
    assert Period.MONTH.end(feb) == 1_709_251_200.0  # 29 days later, March 1st
    assert [p.rolling for p in Period] == [True, True, True, False]


# ---- run-time keys in the results store ---------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    with backend_at(request.param, tmp_path) as b:
        yield b


def stored(name: str, key: str, **policy: Any) -> StoredKey:
    return StoredKey(name, key_digest(key), created_at=100.0, **policy)


def test_stored_keys_keep_digest_and_policy_never_the_key(backend: Backend) -> None:
    budget = Budget(25.0, Period.MONTH, None)
    key = stored("svc", "sk-llmp-very-secret", team="t", models=("chat", "fb-*"), rpm=5, tpm=9, budget=budget, drill=True)  # fmt: skip
    with backend.open() as store:
        assert store.add_key(key)
        assert store.add_key(stored("plain", "sk-llmp-other"))
        assert store.stored_keys() == [stored("plain", "sk-llmp-other"), key]
        assert store.stored_keys()[1].gateway_key() == GatewayKey(
            "svc", key_digest("sk-llmp-very-secret"), "t", ("chat", "fb-*"), 5, 9, budget,
            drill=True,
        )  # fmt: skip
        assert store.stored_keys()[0].drill is False
    dump = repr(backend.sql("SELECT * FROM gateway_keys"))
    assert "sk-llmp-very-secret" not in dump and key_digest("sk-llmp-very-secret") in dump


def test_names_and_digests_are_taken_for_good(backend: Backend) -> None:
    with backend.open() as store:
        assert store.add_key(stored("a", "k1"))
        assert not store.add_key(stored("a", "k2"))  # the name
        assert not store.add_key(stored("b", "k1"))  # the key itself
        revoked = store.revoke_key("a", 200.0)
        assert revoked is not None and revoked.revoked_at == 200.0
        assert store.revoke_key("a", 300.0).revoked_at == 200.0  # once
        assert store.revoke_key("nobody", 300.0) is None
        assert store.stored_keys() == []
        assert [k.name for k in store.stored_keys(revoked=True)] == ["a"]
        assert not store.add_key(stored("a", "k3"))  # revoked names stay taken


def test_rotate_replaces_the_digest_of_an_unrevoked_key(backend: Backend) -> None:
    with backend.open() as store:
        store.add_key(stored("a", "old", team="t", drill=True))
        store.add_key(stored("b", "other"))
        rotated = store.rotate_key("a", key_digest("new"), 150.0)
        assert rotated is not None
        assert (rotated.digest, rotated.team, rotated.rotated_at) == (key_digest("new"), "t", 150.0)
        assert rotated.drill  # the same policy
        assert [k.digest for k in store.stored_keys()] == [key_digest("new"), key_digest("other")]
        assert store.rotate_key("a", key_digest("other"), 160.0) is None  # taken by b
        assert store.rotate_key("nobody", key_digest("x"), 160.0) is None
        store.revoke_key("a", 170.0)
        assert store.rotate_key("a", key_digest("newer"), 180.0) is None


def test_fingerprint_is_the_digests_start() -> None:
    key = stored("a", "sk-llmp-x")
    assert key.fingerprint == key_digest("sk-llmp-x")[:8]
    assert not re.search("sk-llmp", repr(key))


def test_the_ring_takes_run_time_keys_with_config_policy_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from llmpulse.gateway.keys import KeyRing

    config = gateway(
        ["os.environ/PLAIN_KEY", {"name": "pol", "team": "config-team", "models": ["chat"]}],
        general_settings={"master_key": "sk-master"},
    )
    ring = KeyRing(config.settings.keys)
    plain = config.settings.keys[1].name
    ring.load([
        stored("pol", "sk-pol", team="stored-team"),
        stored("free", "sk-free", models=("fb-*",)),
        stored(plain, "sk-shadowed"),
        stored("master", "sk-shadowed-too"),
        StoredKey("gone", key_digest("sk-gone"), revoked_at=5.0),
    ])  # fmt: skip
    pol = ring.lookup("sk-pol")
    assert pol is not None and (pol.name, pol.team, pol.models) == ("pol", "config-team", ("chat",))
    assert ring.lookup("sk-free").models == ("fb-*",)
    assert ring.lookup("sk-master").master and ring.lookup("sk-plain-secret").name == plain
    for refused in ("sk-shadowed", "sk-shadowed-too", "sk-gone", "", "sk-pol "):
        assert ring.lookup(refused) is None
    assert caplog.text.count("is refused: the config has a key of that name") == 2
    ring.load([stored("free", "sk-free"), stored(plain, "sk-shadowed")])  # swapped whole
    assert ring.lookup("sk-pol") is None and ring.lookup("sk-free") is not None
    assert caplog.text.count("is refused") == 2  # said once per name
    assert ring.taken("master") and ring.taken(plain) and not ring.taken("pol")


def test_a_key_may_name_a_group_the_gateway_skips_as_fallbacks_and_aliases_may() -> None:
    """A LiteLLM file's SageMaker or embedding group loads, skipped; a key listing it among its
    models must not refuse the whole file (fallbacks and aliases naming it are only dropped).
    The name stays in the key's models, so it widens nothing: it just allows nothing served."""
    skipped = [
        {"model_name": "llama-sagemaker", "litellm_params": {"model": "sagemaker/llama-3"}},
        {"model_name": "embed", "litellm_params": {"model": "openai/text-embedding-3-small", "api_key": "sk-p"}, "model_info": {"mode": "embedding"}},
    ]  # fmt: skip
    doc = {
        "model_list": MODELS + skipped,
        "gateway": {"keys": [{"name": "k", "models": ["llama-sagemaker"]}, {"name": "j", "models": ["chat", "embed"]}]},
    }  # fmt: skip
    config = parse_gateway(doc, env=ENV)
    assert config is not None
    k, j = config.settings.keys
    assert k.models == ("llama-sagemaker",) and not k.allows("chat")
    assert j.models == ("chat", "embed")
    assert any(
        "gateway.keys[0].models[0]" in w and "gateway.keys[1].models[1]" in w
        for w in config.warnings
    ), config.warnings
    with pytest.raises(ConfigError, match=r"gateway\.keys\[0\]\.models\[0\]: 'nope' names no"):
        parse_gateway({**doc, "gateway": {"keys": [{"name": "k", "models": ["nope"]}]}}, env=ENV)
