import pytest
import yaml

from llmpulse.config import ConfigError, load_config, parse_config
from llmpulse.config.gateway import Strategy
from llmpulse.config.keys import key_digest, plain_key_name
from llmpulse.config.litellm import parse_gateway

ENV = {
    "OPENAI_API_KEY": "sk-secret-openai",
    "ANTHROPIC_API_KEY": "sk-ant-secret",
    "GROQ_API_KEY": "gsk-secret-groq",
}

ISSUE_EXAMPLE = """
model_list:
  - model_name: my-chat-model
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
  - model_name: my-chat-model
    litellm_params: {model: anthropic/claude-sonnet-4-6, api_key: os.environ/ANTHROPIC_API_KEY}
  - model_name: my-chat-model
    litellm_params: {model: groq/llama-3.3-70b-versatile, api_key: os.environ/GROQ_API_KEY}
router_settings:
  routing_strategy: "latency-based-routing"
  num_retries: 2
  fallbacks: [{"my-chat-model": ["my-chat-model"]}]
"""

WHOLE_PROXY_FILE = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eastus
      api_base: os.environ/AZURE_API_BASE
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-10-21"
      rpm: 600
      tpm: 100000
      order: 1
    model_info:
      id: eastus
      base_model: azure/gpt-4o
      mode: chat
      max_input_tokens: 128000
      supports_vision: true
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 500
      tpm: 30000
      order: 2
      timeout: 30
      stream_timeout: 10
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-6
      api_key: os.environ/ANTHROPIC_API_KEY
  - model_name: text-embedding
    litellm_params:
      model: openai/text-embedding-3-small
    model_info:
      mode: embedding
litellm_settings:
  drop_params: true
  success_callback: ["langfuse"]
  callbacks: ["otel"]
  num_retries: 3
  request_timeout: 600
  context_window_fallbacks: [{"gpt-4o": ["claude"]}]
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  database_url: os.environ/DATABASE_URL
  alerting: ["slack"]
router_settings:
  routing_strategy: usage-based-routing-v2
  redis_host: os.environ/REDIS_HOST
  allowed_fails: 2
  cooldown_time: 30
  fallbacks: [{"gpt-4o": ["claude"]}]
environment_variables:
  REDIS_PORT: "6379"
"""

WHOLE_ENV = {
    **ENV,
    "AZURE_API_BASE": "https://res.openai.azure.com/",
    "AZURE_API_KEY": "az-secret-key",
    "LITELLM_MASTER_KEY": "sk-master-secret",
    "REDIS_HOST": "cache",
}


def load(text, env=ENV):
    return parse_config(yaml.safe_load(text), env=env)


def test_the_issue_example_loads_unchanged():
    config = load(ISSUE_EXAMPLE)
    gw = config.gateway
    assert gw is not None and gw.warnings == () and config.warnings == ()
    deployments = gw.resolve("my-chat-model")
    assert [(d.provider, d.protocol, d.model) for d in deployments] == [
        ("openai", "openai", "gpt-4o"),
        ("anthropic", "anthropic", "claude-sonnet-4-6"),
        ("groq", "openai", "llama-3.3-70b-versatile"),
    ]
    assert [d.api_key for d in deployments] == list(ENV.values())
    assert deployments[2].base_url == "https://api.groq.com/openai/v1"
    assert gw.router.strategy is Strategy.LATENCY
    assert gw.router.num_retries == 2
    assert gw.router.fallbacks == {"my-chat-model": ("my-chat-model",)}
    assert gw.model_names == ["my-chat-model"]
    assert len({d.id for d in deployments}) == 3
    # Ids are stable: the same file gives the same ids.
    assert [d.id for d in load(ISSUE_EXAMPLE).gateway.resolve("my-chat-model")] == [
        d.id for d in deployments
    ]


def test_a_whole_litellm_proxy_file_loads_with_one_warning(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(WHOLE_PROXY_FILE)
    config = load_config(path, env=WHOLE_ENV)
    skipping, warning = config.warnings
    assert (
        skipping == "skipping deployments that are not chat models: model_list[3] (mode: embedding)"
    )
    for key in (
        "environment_variables",
        "general_settings.alerting",
        "general_settings.database_url",
        "litellm_settings.callbacks",
        "litellm_settings.success_callback",
    ):
        assert key in warning
    gw = config.gateway
    assert "master_key" not in warning and "routing_strategy" not in warning
    assert "redis_host" not in warning and gw.settings.redis_url == "redis://cache:6379"
    assert "drop_params" not in warning  # acted on: every deployment drops what it cannot take
    azure, openai = gw.resolve("gpt-4o")
    assert azure.drop_params and openai.drop_params
    assert (azure.id, azure.name, azure.protocol) == ("eastus", "gpt-4o/eastus", "azure")
    assert azure.base_url == "https://res.openai.azure.com"
    assert (azure.model, azure.base_model, azure.api_version) == (
        "gpt-4o-eastus",
        "gpt-4o",
        "2024-10-21",
    )
    assert (azure.rpm, azure.tpm, azure.order, azure.context_window) == (600, 100000, 1, 128000)
    assert (openai.order, openai.timeout, openai.stream_timeout) == (2, 30.0, 10.0)
    assert gw.resolve("text-embedding") == []
    assert [k.secret for k in gw.settings.keys] == ["sk-master-secret"]
    router = gw.router
    assert router.strategy is Strategy.RATE_LIMIT_AWARE
    # litellm_settings supplies what router_settings leaves out.
    assert (router.num_retries, router.timeout) == (3, 600.0)
    assert router.context_window_fallbacks == {"gpt-4o": ("claude",)}
    assert (router.allowed_fails, router.cooldown_time) == (2, 30.0)
    assert [t.name for t in config.targets] == [
        "gpt-4o/eastus",
        "gpt-4o/openai/gpt-4o",
        "claude/anthropic/claude-sonnet-4-6",
    ]
    target = config.targets[0]
    assert (target.model, target.deployment, target.context_window) == (
        "gpt-4o",
        "gpt-4o-eastus",
        128000,
    )


def test_every_supported_key():
    gw = load(
        """
model_list:
  - model_name: main
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/OPENAI_API_KEY
      api_base: https://api.openai.com/v1/
      rpm: 100
      tpm: 2000
      order: 1
      weight: 3
      timeout: 20s
      stream_timeout: 5
      max_tokens: 256
      temperature: 0.2
      input_cost_per_token: 0.00000015
      output_cost_per_token: 0.0000006
      extra_headers: {X-Team: os.environ/TEAM}
    model_info: {id: primary, max_tokens: 128000}
  - model_name: main
    rpm: 7
    tpm: 700
    litellm_params: {model: groq/llama-3.1-8b-instant, api_key: os.environ/GROQ_API_KEY}
    model_info: {order: 2}
  - model_name: big
    litellm_params: {model: anthropic/claude-sonnet-4-6}
  - model_name: local
    litellm_params: {model: ollama/llama3, api_base: "http://gpu:11434"}
  - model_name: vllm
    litellm_params: {model: hosted_vllm/qwen, api_base: "http://gpu:8000/v1"}
  - model_name: compat
    litellm_params: {model: openai/my-model, api_base: "http://llm.internal/v1"}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 4
  timeout: 60
  stream_timeout: 15
  retry_after: 1
  allowed_fails: 1
  cooldown_time: 10s
  disable_cooldowns: true
  fallbacks: [{"main": ["big"]}, {"big": ["main"]}]
  context_window_fallbacks: [{"main": ["big"]}]
  content_policy_fallbacks: [{"big": ["main"]}]
  default_fallbacks: ["big"]
  max_fallbacks: 2
  enable_pre_call_checks: true
  model_group_alias: {gpt-4o-mini: main, secret: {model: big, hidden: true}}
general_settings:
  master_key: sk-literal-master
gateway:
  listen: 0.0.0.0:4001
  keys: [os.environ/GW_KEY]
  ttft_limit: 2s
  idle_timeout: 15s
  max_retry_wait: 3s
  rate_limit_threshold: 0.8
  store_prompts: true
""",
        env={**ENV, "TEAM": "team-a", "GW_KEY": "gw-secret"},
    ).gateway
    # The literal master key is said once, by its path; every other key is acted on.
    assert gw.warnings == (
        "keys written in the file are used as written and kept secret: general_settings.master_key",
    )
    primary, groq = gw.resolve("main")
    assert (primary.id, primary.name, primary.base_url) == (
        "primary",
        "main/primary",
        "https://api.openai.com/v1",
    )
    assert (primary.rpm, primary.tpm, primary.order, primary.weight) == (100, 2000, 1, 3.0)
    assert (primary.timeout, primary.stream_timeout) == (20.0, 5.0)
    assert (primary.max_tokens, primary.temperature, primary.context_window) == (256, 0.2, 128000)
    assert primary.prices.input_per_mtok == pytest.approx(0.15)
    assert primary.prices.output_per_mtok == pytest.approx(0.6)
    assert primary.headers == {"X-Team": "team-a"}
    assert (groq.rpm, groq.tpm, groq.order) == (7, 700, 2)
    (claude,) = gw.resolve("big")
    assert claude.api_key == "sk-ant-secret"  # the provider's standard variable
    (ollama,) = gw.resolve("local")
    assert (ollama.provider, ollama.base_url, ollama.api_key) == (
        "ollama",
        "http://gpu:11434/v1",
        None,
    )
    (vllm,) = gw.resolve("vllm")
    assert (vllm.provider, vllm.base_url) == ("vllm", "http://gpu:8000/v1")
    (compat,) = gw.resolve("compat")
    assert (compat.provider, compat.base_url) == ("openai-compatible", "http://llm.internal/v1")
    router = gw.router
    assert router.strategy is Strategy.WEIGHTED
    assert (router.num_retries, router.timeout, router.stream_timeout) == (4, 60.0, 15.0)
    assert (router.retry_after, router.allowed_fails, router.cooldown_time) == (1.0, 1, 10.0)
    assert router.disable_cooldowns and router.enable_pre_call_checks
    assert router.fallbacks == {"main": ("big",), "big": ("main",)}
    assert router.context_window_fallbacks == {"main": ("big",)}
    assert router.content_policy_fallbacks == {"big": ("main",)}
    assert (router.default_fallbacks, router.max_fallbacks) == (("big",), 2)
    assert gw.resolve("gpt-4o-mini") == gw.resolve("main")
    assert gw.resolve("secret") == gw.resolve("big")
    assert gw.model_names == ["main", "big", "local", "vllm", "compat", "gpt-4o-mini"]
    s = gw.settings
    assert (s.host, s.port) == ("0.0.0.0", 4001)
    assert [(k.name, k.secret, k.master) for k in s.keys] == [
        ("master", "sk-literal-master", True),
        (plain_key_name(key_digest("gw-secret")), "gw-secret", False),
    ]
    assert (s.ttft_limit, s.idle_timeout, s.max_retry_wait) == (2.0, 15.0, 3.0)
    assert (s.rate_limit_threshold, s.store_prompts, s.monitor) == (0.8, True, True)


@pytest.mark.parametrize(
    ("name", "strategy"),
    [
        ("simple-shuffle", Strategy.WEIGHTED),
        ("least-busy", Strategy.LEAST_BUSY),
        ("usage-based-routing", Strategy.RATE_LIMIT_AWARE),
        ("usage-based-routing-v2", Strategy.RATE_LIMIT_AWARE),
        ("latency-based-routing", Strategy.LATENCY),
        ("cost-based-routing", Strategy.COST),
        ("priority", Strategy.PRIORITY),
        ("rate-limit-aware", Strategy.RATE_LIMIT_AWARE),
    ],
)
def test_routing_strategies(name, strategy):
    raw = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o"}}],
        "router_settings": {"routing_strategy": name},
    }
    assert parse_config(raw, env=ENV).gateway.router.strategy is strategy


def test_defaults_without_router_settings():
    raw = {"model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o"}}]}
    gw = parse_config(raw, env=ENV).gateway
    (d,) = gw.resolve("m")
    assert (d.provider, d.model, d.api_key) == ("openai", "gpt-4o", "sk-secret-openai")
    router = gw.router
    assert router.strategy is Strategy.PRIORITY
    assert (router.allowed_fails, router.cooldown_time, router.max_fallbacks) == (3, 5.0, 5)
    assert (gw.settings.host, gw.settings.port, gw.settings.keys) == ("127.0.0.1", 4000, ())


def test_wildcard_groups_pass_the_requested_name_through():
    gw = load(
        """
model_list:
  - model_name: "fb-*"
    litellm_params: {model: "openai/fb-*"}
  - model_name: "anthropic/*"
    litellm_params: {model: "anthropic/*"}
  - model_name: "fb-special-*"
    litellm_params: {model: "groq/special-*"}
  - model_name: "fb-exact"
    litellm_params: {model: "groq/llama-3.1-8b-instant"}
  - model_name: "*"
    litellm_params: {model: "openai/*"}
"""
    ).gateway
    (d,) = gw.resolve("fb-llama-3")
    assert (d.provider, d.model, d.group, d.name) == (
        "openai",
        "fb-llama-3",
        "fb-*",
        "fb-llama-3/openai/fb-llama-3",
    )
    (d,) = gw.resolve("anthropic/claude-haiku-4-5")
    assert (d.provider, d.model) == ("anthropic", "claude-haiku-4-5")
    # The most specific pattern wins; an exact name wins over every pattern.
    assert gw.resolve("fb-special-x")[0].model == "special-x"
    assert gw.resolve("fb-exact")[0].model == "llama-3.1-8b-instant"
    assert gw.resolve("anything")[0].model == "anything"
    assert gw.model_names == ["fb-exact"]


WILDCARD_AND_CONCRETE = """
model_list:
  - model_name: "fb-*"
    litellm_params: {model: "openai/fb-*"}
  - model_name: concrete
    litellm_params: {model: openai/gpt-4o-mini}
"""


def test_wildcard_deployments_are_not_monitored():
    # There is no concrete model to call.
    assert [t.name for t in load(WILDCARD_AND_CONCRETE).targets] == ["concrete/openai/gpt-4o-mini"]


def test_unknown_model_resolves_to_nothing():
    gw = load(ISSUE_EXAMPLE).gateway
    assert gw.resolve("nope") == []
    assert gw.resolve("my-chat-model-2") == []


def test_secrets_never_in_reprs_or_errors():
    config = load(ISSUE_EXAMPLE)
    text = repr(config.gateway) + repr(config.targets) + repr(config)
    for secret in ENV.values():
        assert secret not in text
    gw = load(
        "model_list: [{model_name: m, litellm_params: {model: openai/gpt-4o}}]\n"
        "general_settings: {master_key: sk-master-literal}\n"
    ).gateway
    assert "sk-master-literal" not in repr(gw)
    for raw in (
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {"model": "openai/x", "apikey": "sk-pasted-1"},
                }
            ],
            "gateway": {"keyz": "sk-pasted-1"},
        },
        {
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
            "gateway": {"keys": ["sk-pasted-1"]},
        },
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {"model": "openai/x", "extra_headers": {"A": 5}},
                }
            ],
            "general_settings": {"master_key": ["sk-pasted-1"]},
        },
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(raw, env=ENV)
        assert "sk-pasted" not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/"}}]},
            r"model_list\[0\]\.litellm_params\.model: no model name",
        ),
        (
            {
                "model_list": [
                    {"model_name": "m", "litellm_params": {"model": "openai/x", "rpm": "lots"}}
                ]
            },
            r"model_list\[0\]\.litellm_params\.rpm: .*integer.*'lots'",
        ),
        (
            {
                "model_list": [
                    {"model_name": "m", "litellm_params": {"model": "openai/x", "timeout": "3x"}}
                ]
            },
            r"model_list\[0\]\.litellm_params\.timeout: expected a duration",
        ),
        (
            {
                "model_list": [
                    {
                        "model_name": "m",
                        "litellm_params": {"model": "openai/x", "api_base": "ftp://x"},
                    }
                ]
            },
            r"model_list\[0\]\.litellm_params\.api_base: expected an http",
        ),
        (
            {"model_list": [{"model_name": "m"}]},
            r"model_list\[0\]\.litellm_params: required key is missing",
        ),
        (
            {
                "model_list": [
                    {
                        "model_name": "m",
                        "litellm_params": {"model": "openai/x"},
                        "model_info": {"max_input_tokens": 0},
                    }
                ]
            },
            r"model_list\[0\]\.model_info\.max_input_tokens: .*greater than",
        ),
        (
            {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}] * 2},
            r"model_list\[1\]\.litellm_params: same deployment as model_list\[0\]",
        ),
        (
            {"model_list": "nope"},
            r"model_list: .*list",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "router_settings": {"routing_strategy": "fastest"},
            },
            r"router_settings\.routing_strategy: unknown routing strategy 'fastest'; expected one of .*priority",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "router_settings": {"num_retries": -1},
            },
            r"router_settings\.num_retries: .*greater than or equal to 0",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "router_settings": {"fallbacks": [{"m": ["typo"]}]},
            },
            r"router_settings\.fallbacks: no model named 'typo'",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "litellm_settings": {"context_window_fallbacks": [{"m": ["typo"]}]},
            },
            r"litellm_settings\.context_window_fallbacks: no model named 'typo'",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "router_settings": {"fallbacks": {"m": ["m"]}},
            },
            r"router_settings\.fallbacks: .*list",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "router_settings": {"default_fallbacks": ["typo"]},
            },
            r"router_settings\.default_fallbacks: no model named 'typo'",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "router_settings": {"model_group_alias": {"a": "typo"}},
            },
            r"router_settings\.model_group_alias\.a: no model named 'typo'",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "gateway": {"listen": "0.0.0.0:4000"},
            },
            r"gateway\.listen: 0\.0\.0\.0:4000 is not a loopback address, so the gateway needs keys",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "gateway": {"rate_limit_threshold": 2},
            },
            r"gateway\.rate_limit_threshold: .*less than or equal to 1",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "gateway": {"monitr": False},
            },
            r"gateway\.monitr: unknown key",
        ),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "general_settings": {"master_key": "os.environ/NOPE"},
            },
            r"general_settings\.master_key: environment variable NOPE is not set",
        ),
    ],
)
def test_bad_values_name_their_key(raw, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(raw, env=ENV)


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "litellm.yaml"
    path.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: openai/}\n")
    with pytest.raises(ConfigError, match=r"litellm\.yaml: model_list\[0\]\.litellm_params\.model"):
        load_config(path, env=ENV)


def test_mixed_file_with_targets_and_model_list():
    config = load(
        """
storage: /tmp/x.db
targets:
  - provider: openai
    model: gpt-4o-mini
    api_key: os.environ/OPENAI_API_KEY
model_list:
  - model_name: chat
    litellm_params: {model: anthropic/claude-haiku-4-5, api_key: os.environ/ANTHROPIC_API_KEY}
    model_info: {max_input_tokens: 200000}
"""
    )
    assert config.storage == "/tmp/x.db"
    assert [t.name for t in config.targets] == [
        "openai/gpt-4o-mini",
        "chat/anthropic/claude-haiku-4-5",
    ]
    auto = config.targets[1]
    assert (auto.provider, auto.protocol, auto.model, auto.api_key) == (
        "anthropic",
        "anthropic",
        "claude-haiku-4-5",
        "sk-ant-secret",
    )
    assert (auto.context_window, auto.price_provider, auto.interval) == (200000, "anthropic", 30.0)
    assert config.gateway.resolve("chat")[0].name == auto.name


def test_monitoring_can_be_turned_off():
    text = ISSUE_EXAMPLE + "gateway: {monitor: false}\n"
    config = load(text)
    assert config.targets == []
    assert len(config.gateway.deployments) == 3
    config = load(text + "targets: [{provider: groq, api_key: os.environ/GROQ_API_KEY}]\n")
    assert [t.name for t in config.targets] == ["groq/llama-3.1-8b-instant"]


def test_probe_interval_sets_how_often_deployments_are_probed():
    config = load(ISSUE_EXAMPLE + "gateway: {probe_interval: 1m30s}\n")
    assert config.gateway.settings.probe_interval == 90.0
    # The gateway's own probes and `llmpulse run`'s of the same deployments alike.
    assert [t.interval for t in config.gateway.targets()] == [90.0] * 3
    assert [t.interval for t in config.targets] == [90.0] * 3
    assert {t.interval for t in load(ISSUE_EXAMPLE).targets} == {30.0}  # the monitor's default


@pytest.mark.parametrize("value", ["soon", "0s", "-5s"])
def test_a_bad_probe_interval_names_its_key(value):
    with pytest.raises(ConfigError, match=r"gateway\.probe_interval"):
        load(ISSUE_EXAMPLE + f"gateway: {{probe_interval: {value!r}}}\n")


def test_target_and_deployment_with_one_name_conflict():
    with pytest.raises(ConfigError, match=r"model_list: deployment 'chat/openai/gpt-4o'"):
        load(
            """
targets: [{name: chat/openai/gpt-4o, provider: openai}]
model_list: [{model_name: chat, litellm_params: {model: openai/gpt-4o}}]
"""
        )


def test_two_deployments_of_one_model_get_distinct_names():
    gw = load(
        """
model_list:
  - model_name: chat
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
  - model_name: chat
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/ANTHROPIC_API_KEY}
"""
    ).gateway
    names = [d.name for d in gw.deployments]
    assert len(set(names)) == 2 and all(n.startswith("chat/openai/gpt-4o#") for n in names)


def test_files_without_targets_or_deployments_are_refused():
    with pytest.raises(ConfigError, match="targets: expected at least one target, or a model_list"):
        parse_config({"router_settings": {"num_retries": 1}}, env=ENV)
    with pytest.raises(ConfigError, match="targets: expected at least one target"):
        parse_config({"model_list": None}, env=ENV)
    with pytest.raises(ConfigError, match=r"targetz: unknown key"):
        parse_config(
            {"targetz": [], "model_list": yaml.safe_load(ISSUE_EXAMPLE)["model_list"]}, env=ENV
        )


def test_parse_gateway_alone():
    assert parse_gateway({"targets": []}, ENV) is None
    gw = parse_gateway(yaml.safe_load(ISSUE_EXAMPLE), ENV)
    assert len(gw.deployments) == 3


def test_redis_url_from_gateway_section_or_litellm_router_settings():
    entry = {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o"}}
    env = {**ENV, "REDIS_PASSWORD": "p@ss/word", "REDIS_URL": "redis://cache:6379/2"}
    # LiteLLM's host/port/password, the password from the environment and URL-quoted.
    raw = {
        "model_list": [entry],
        "router_settings": {
            "redis_host": "cache",
            "redis_port": 6380,
            "redis_password": "os.environ/REDIS_PASSWORD",
        },
    }
    gw = parse_gateway(raw, env)
    assert gw.settings.redis_url == "redis://:p%40ss%2Fword@cache:6380"
    assert gw.warnings == ()  # acted on, so not "ignored"
    assert "p@ss" not in repr(gw.settings)
    # llmpulse's own key wins, and may be a reference too.
    raw["gateway"] = {"redis_url": "os.environ/REDIS_URL", "redis_prefix": "team-a"}
    gw = parse_gateway(raw, env)
    assert gw.settings.redis_url == "redis://cache:6379/2"
    assert gw.settings.redis_prefix == "team-a"
    with pytest.raises(ConfigError, match=r"gateway\.redis_url: expected a redis://"):
        parse_gateway({"model_list": [entry], "gateway": {"redis_url": "cache:6379"}}, env)
    assert parse_gateway({"model_list": [entry]}, env).settings.redis_url is None


def test_limits_have_defaults_and_are_configurable():
    entry = {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o"}}
    settings = parse_gateway({"model_list": [entry]}, ENV).settings
    assert settings.max_request_bytes == 32 << 20  # LiteLLM's default max_request_size_mb
    assert (settings.max_json_depth, settings.max_model_name_length) == (128, 256)
    assert settings.max_wildcard_targets == 1000
    assert (settings.header_timeout, settings.shutdown_grace) == (30.0, 10.0)
    assert settings.worker_timeout == 30.0  # gunicorn's --timeout
    # LiteLLM's key is read (not named in the warning); llmpulse's own wins when both are set.
    raw = {"model_list": [entry], "general_settings": {"max_request_size_mb": 2}}
    gw = parse_gateway(raw, ENV)
    assert gw.settings.max_request_bytes == 2 << 20 and not gw.warnings
    raw["gateway"] = {
        "max_request_size_mb": 0.5,
        "max_json_depth": 64,
        "max_model_name_length": 100,
        "max_wildcard_targets": 0,
        "header_timeout": "5s",
        "shutdown_grace": "1m",
        "worker_timeout": "2m",
    }
    settings = parse_gateway(raw, ENV).settings
    assert settings.max_request_bytes == 1 << 19
    assert (settings.max_json_depth, settings.max_model_name_length) == (64, 100)
    assert settings.max_wildcard_targets == 0
    assert (settings.header_timeout, settings.shutdown_grace) == (5.0, 60.0)
    assert settings.worker_timeout == 120.0


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("general_settings", "max_request_size_mb", 0, "greater than or equal to 0.001"),
        ("gateway", "max_request_size_mb", "big", "valid number"),
        ("gateway", "max_json_depth", 1000, "less than or equal to 256"),
        ("gateway", "max_model_name_length", 0, "greater than or equal to 1"),
        ("gateway", "max_wildcard_targets", -1, "greater than or equal to 0"),
        ("gateway", "header_timeout", 0, "more than 0"),
        ("gateway", "shutdown_grace", "soon", "expected a duration"),
        ("gateway", "worker_timeout", 0, "more than 0"),
        ("gateway", "worker_timeout", "1s", "greater than or equal to 3"),
    ],
)
def test_a_bad_limit_names_its_key_in_one_line(section, key, value, expected):
    raw = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}]}
    raw[section] = {key: value}
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: .*{expected}") as info:
        parse_config(raw, env=ENV)
    assert "\n" not in str(info.value)


LITELLM_STYLE = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: sk-1234
  - model_name: local
    litellm_params:
      model: openai/llama3
      api_base: http://gpu:8000/v1
      api_key: none
      extra_headers: {Authorization: "Bearer tok-literal", X-Team: a, api-key: os.environ/TEAM}
  - model_name: claude-sagemaker
    litellm_params:
      model: sagemaker/jumpstart-dft-llama-3
      aws_secret_access_key: aws-literal-secret
  - model_name: sagemaker-llama
    litellm_params: {model: sagemaker/jumpstart-llama, aws_region_name: us-west-2}
  - model_name: embed
    litellm_params: {model: openai/text-embedding-3-small, api_key: sk-embed-literal}
    model_info: {mode: embedding}
  - model_name: unnamed
    litellm_params: {model: llama3}
router_settings:
  fallbacks: [{"gpt-4o": ["claude-sagemaker", "local"]}, {"claude-sagemaker": ["gpt-4o"]}]
  model_group_alias: {claude: claude-sagemaker, fast: local}
  redis_host: cache
  redis_password: redis-literal
general_settings:
  master_key: sk-master-literal
"""
LITERALS = (
    "sk-1234",
    "none",
    "Bearer tok-literal",
    "aws-literal-secret",
    "sk-embed-literal",
    "redis-literal",
    "sk-master-literal",
)


def test_litellm_configs_load_as_is_with_one_warning_per_concern():
    config = load(LITELLM_STYLE, env={"TEAM": "team-key"})
    gw = config.gateway
    assert [g.name for g in gw.groups] == ["gpt-4o", "local"]
    assert gw.skipped == (
        "model_list[4] (mode: embedding)",
        "model_list[2] (sagemaker/)",
        "model_list[3] (sagemaker/)",
        "model_list[5] (no provider in 'llama3')",
    )
    assert (
        config.warnings
        == gw.warnings
        == (
            "skipping deployments that are not chat models: model_list[4] (mode: embedding)",
            "skipping deployments of providers llmpulse does not speak yet: model_list[2] (sagemaker/), "
            "model_list[3] (sagemaker/), model_list[5] (no provider in 'llama3')",
            "ignoring fallbacks and aliases that name only skipped deployments: "
            "router_settings.model_group_alias.claude ('claude-sagemaker'), "
            "router_settings.fallbacks ('claude-sagemaker')",
            "keys written in the file are used as written and kept secret: "
            "model_list[0].litellm_params.api_key, "
            "model_list[1].litellm_params.extra_headers.Authorization, "
            "model_list[1].litellm_params.api_key, general_settings.master_key, "
            "router_settings.redis_password",
        )
    )
    # Skipped groups are gone from routing; what still names a served model stays.
    assert gw.router.fallbacks == {"gpt-4o": ("local",)}
    assert gw.aliases == {"fast": "local"}
    # Every literal secret sits where secrets are collected (and never in a repr or warning).
    (gpt,) = gw.resolve("gpt-4o")
    (local,) = gw.resolve("local")
    assert (gpt.api_key, local.api_key) == ("sk-1234", "none")
    assert local.headers == {
        "Authorization": "Bearer tok-literal",
        "X-Team": "a",
        "api-key": "team-key",
    }
    assert [k.secret for k in gw.settings.keys] == ["sk-master-literal"]
    assert gw.settings.redis_url == "redis://:redis-literal@cache:6379"
    shown = repr(config) + "\n".join(config.warnings)
    assert not [s for s in LITERALS if s in shown]


def test_nothing_servable_is_one_line_naming_why():
    embedding_only = """
model_list:
  - model_name: text-embedding-ada-002
    litellm_params: {model: azure/azure-embedding-model, api_base: https://x, api_version: "2023-07-01-preview"}
    model_info: {mode: embedding}
"""
    with pytest.raises(ConfigError) as info:
        load(embedding_only)
    assert str(info.value) == (
        "model_list: no deployment llmpulse can serve (a chat model of a provider and auth "
        "method it supports): model_list[0] (mode: embedding)"
    )
    with pytest.raises(
        ConfigError, match=r"model_list\[0\] \(sagemaker/\), model_list\[1\] \(siliconflow/\)$"
    ):
        load(
            "model_list:\n"
            "  - {model_name: a, litellm_params: {model: sagemaker/claude}}\n"
            "  - {model_name: b, litellm_params: {model: siliconflow/qwen, api_key: sk-1}}\n"
        )
    # Beside targets, the monitor still runs: only the gateway has nothing to serve.
    config = load(embedding_only + "targets: [{provider: openai}]\n")
    assert config.gateway.deployments == () and [t.name for t in config.targets] == [
        "openai/gpt-4o-mini"
    ]


def test_a_fallback_naming_nothing_at_all_is_still_a_typo():
    with pytest.raises(ConfigError, match=r"router_settings\.fallbacks: no model named 'typo'"):
        load(LITELLM_STYLE.replace('["gpt-4o"]', '["typo"]'), env={"TEAM": "team-key"})
    # A skipped wildcard group covers the names it would have matched.
    gw = load(
        """
model_list:
  - {model_name: main, litellm_params: {model: openai/gpt-4o}}
  - {model_name: "sagemaker/*", litellm_params: {model: "sagemaker/*"}}
router_settings:
  default_fallbacks: ["sagemaker/claude-x", main]
"""
    ).gateway
    assert gw.router.default_fallbacks == ("main",)


def test_azure_without_api_version_uses_litellms_default():
    gw = load(
        """
model_list:
  - model_name: gpt-4
    litellm_params: {model: azure/gpt-4, api_base: https://res.openai.azure.com/, api_key: k1}
  - model_name: gpt-4
    litellm_params:
      model: azure/gpt-4-eu
      api_base: https://eu.openai.azure.com/
      api_key: k2
      api_version: "2024-10-21"
"""
    ).gateway
    assert [d.api_version for d in gw.deployments] == ["2025-02-01-preview", "2024-10-21"]
    assert gw.warnings[0] == (
        "azure deployments without api_version use 2025-02-01-preview (LiteLLM's default): "
        "model_list[0]"
    )
    assert gw.deployments[0].to_target().api_version == "2025-02-01-preview"
    # AZURE_API_VERSION still comes first, as in LiteLLM.
    gw = load(
        "model_list: [{model_name: a, litellm_params: {model: azure/d, api_base: 'https://x'}}]",
        env={"AZURE_API_VERSION": "2024-06-01", "AZURE_API_KEY": "k"},
    ).gateway
    assert gw.deployments[0].api_version == "2024-06-01" and gw.warnings == ()


def test_a_deployment_without_a_key_loads_marked_unauthenticated():
    config = load(
        """
model_list:
  - {model_name: chat, litellm_params: {model: mistral/mistral-small-latest}}
  - {model_name: chat, litellm_params: {model: groq/llama-3.1-8b-instant, api_key: os.environ/GROQ_KEY_2}}
  - {model_name: chat, litellm_params: {model: openai/gpt-4o}}
  - {model_name: local, litellm_params: {model: ollama/llama3}}
""",
        env={"OPENAI_API_KEY": "sk-openai"},
    )
    mistral, groq, openai_, ollama = config.gateway.deployments
    assert (mistral.api_key, mistral.missing_key) == (
        None,
        "no API key for mistral: set MISTRAL_API_KEY, or model_list[0].litellm_params.api_key",
    )
    assert (
        groq.missing_key
        == "no API key: GROQ_KEY_2 (model_list[1].litellm_params.api_key) is not set"
    )
    assert openai_.missing_key is None and ollama.missing_key is None  # a local server needs none
    assert config.warnings == (
        "deployments without an API key answer 401 until it is set: "
        "model_list[0] (set MISTRAL_API_KEY), model_list[1] (set GROQ_KEY_2)",
    )
    # The monitor's targets carry it, so probes report auth without calling the provider.
    assert [t.missing_key for t in config.targets] == [
        mistral.missing_key,
        groq.missing_key,
        None,
        None,
    ]


JWT = """
model_list:
  - {model_name: gpt-4o, litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}}
general_settings:
  master_key: sk-1234
  enable_jwt_auth: true
  litellm_jwtauth: {user_id_jwt_field: sub}
  allowed_routes: ["/chat/completions"]
  enforce_user_param: false
  allowed_ips: []
"""


def test_access_control_llmpulse_does_not_enforce_fails_closed():
    raw = yaml.safe_load(JWT)
    with pytest.raises(ConfigError) as info:
        parse_gateway(raw, ENV, "litellm.yaml: ")
    assert str(info.value) == (
        "litellm.yaml: general_settings.enable_jwt_auth, general_settings.litellm_jwtauth, "
        "general_settings.allowed_routes: access control llmpulse does not enforce (it checks "
        "gateway keys only); remove it, or pass --accept-unenforced-auth to serve without it"
    )
    gw = parse_gateway(raw, ENV, accept_unenforced_auth=True)
    # False or empty asks for nothing; the others are not "ignored" but answered on their own.
    assert gw.unenforced_auth == (
        "general_settings.enable_jwt_auth",
        "general_settings.litellm_jwtauth",
        "general_settings.allowed_routes",
    )
    assert not [w for w in gw.warnings if "ignoring" in w]
    assert gw.auth_warning(accept=True) == (
        "serving without access control the config asks for (general_settings.enable_jwt_auth, "
        "general_settings.litellm_jwtauth, general_settings.allowed_routes): llmpulse checks "
        "only general_settings.master_key and gateway.keys"
    )
    with pytest.raises(ConfigError, match="--accept-unenforced-auth"):
        gw.auth_warning(accept=False)
    # The monitor serves no clients: `llmpulse run` loads the same file.
    assert load(JWT).gateway.unenforced_auth == gw.unenforced_auth
    assert (
        parse_gateway({**raw, "general_settings": {"enable_jwt_auth": False}}, ENV).warnings == ()
    )


def test_every_credential_header_written_in_the_file_is_named_and_kept_secret():
    gw = load(
        """
model_list:
  - model_name: internal
    litellm_params:
      model: openai/llama3
      api_base: http://gpu:8000/v1
      extra_headers: {Cookie: "session=cookie-literal", X-Auth-Token: tok-literal-2, X-Team: a}
"""
    ).gateway
    # One definition of a credential header (llmpulse.secrets's): named and redacted alike.
    assert gw.warnings == (
        "keys written in the file are used as written and kept secret: "
        "model_list[0].litellm_params.extra_headers.Cookie, "
        "model_list[0].litellm_params.extra_headers.X-Auth-Token",
    )
    assert set(gw.secrets) == {"session=cookie-literal", "tok-literal-2"}


def test_a_numeric_model_info_id_is_its_text_as_in_litellm():
    gw = load(
        """
model_list:
  - {model_name: m, litellm_params: {model: openai/a}, model_info: {id: 1}}
  - {model_name: m, litellm_params: {model: openai/b}, model_info: {id: "2"}}
"""
    ).gateway
    assert [(d.id, d.name) for d in gw.deployments] == [("1", "m/1"), ("2", "m/2")]
    # LiteLLM's ModelInfo turns an int into its text and refuses other non-strings.
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.model_info\.id: .*string"):
        load(
            "model_list: [{model_name: m, litellm_params: {model: openai/a}, model_info: {id: 1.5}}]"
        )
    with pytest.raises(ConfigError, match=r"model_list\[1\]\.model_info\.id: same deployment"):
        load(
            "model_list:\n"
            "  - {model_name: m, litellm_params: {model: openai/a}, model_info: {id: 7}}\n"
            "  - {model_name: m, litellm_params: {model: openai/b}, model_info: {id: '7'}}\n"
        )


def test_a_skipped_deployment_is_not_validated_beyond_its_shape():
    config = load(
        """
model_list:
  - model_name: chat
    litellm_params: {model: openai/gpt-4o}
  - model_name: embed
    litellm_params: {model: openai/text-embedding-3-small, rpm: 0, timeout: forever}
    model_info: {mode: embedding, max_tokens: 0, id: [1]}
  - model_name: claude-sagemaker
    litellm_params:
      model: sagemaker/jumpstart-dft-llama-3
      extra_headers: [not, a, mapping]
      aws_session_tags: {Key: a, Value: b}
      stream_timeout: -1
"""
    )
    assert [g.name for g in config.gateway.groups] == ["chat"]
    assert config.warnings == (
        "skipping deployments that are not chat models: model_list[1] (mode: embedding)",
        "skipping deployments of providers llmpulse does not speak yet: model_list[2] (sagemaker/)",
    )
    # Its shape is still required: a model_list entry names its group and its model.
    for entry, expected in (
        ("{model_name: e, litellm_params: {rpm: 0}, model_info: {mode: embedding}}", "model"),
        ("{litellm_params: {model: sagemaker/x}}", "model_name"),
        ("{model_name: e, litellm_params: {model: sagemaker/x}, model_info: {mode: 3}}", "mode"),
    ):
        with pytest.raises(ConfigError, match=rf"model_list\[1\]\.(\w+\.)?{expected}: "):
            load(f"model_list: [{{model_name: c, litellm_params: {{model: openai/x}}}}, {entry}]")
    # A served entry is validated in full, at its own index.
    with pytest.raises(ConfigError, match=r"^model_list\[2\]\.litellm_params\.rpm: .*greater"):
        load(
            "model_list:\n"
            "  - {model_name: e, litellm_params: {model: sagemaker/x, rpm: 0}}\n"
            "  - {model_name: c, litellm_params: {model: openai/x}}\n"
            "  - {model_name: c, litellm_params: {model: openai/y, rpm: 0}}\n"
        )


ENV_NUMBERS = """
model_list:
  - model_name: m
    litellm_params:
      model: openai/gpt-4o
      timeout: os.environ/T
      stream_timeout: ${ST}
      rpm: os.environ/RPM
      tpm: os.environ/TPM
      input_cost_per_token: os.environ/IN_COST
      output_cost_per_token: os.environ/OUT_COST
      drop_params: os.environ/DROP
"""


def test_numeric_litellm_params_may_reference_the_environment_as_in_litellm():
    # LiteLLM's proxy resolves every os.environ/ value of litellm_params, then takes the text
    # as the number (or flag) its params type declares.
    env = {
        **ENV,
        "T": "45",
        "ST": "10s",
        "RPM": "600",
        "TPM": "100000",
        "IN_COST": "0.000002",
        "OUT_COST": "0.000008",
        "DROP": "true",
    }
    (d,) = load(ENV_NUMBERS, env=env).gateway.deployments
    assert (d.timeout, d.stream_timeout, d.rpm, d.tpm, d.drop_params) == (45, 10, 600, 100000, True)
    assert (d.prices.input_per_mtok, d.prices.output_per_mtok) == pytest.approx((2, 8))
    # Unset or not what the key takes: one line naming the key path and the variable.
    with pytest.raises(ConfigError) as info:
        load(ENV_NUMBERS, env={k: v for k, v in env.items() if k != "T"})
    assert str(info.value) == (
        "model_list[0].litellm_params.timeout: environment variable T is not set "
        "(got 'os.environ/T')"
    )
    for var, value, expected in (
        (
            "T",
            "soon",
            r"timeout: expected a duration such as .*, got 'soon' \(from 'os\.environ/T'\)$",
        ),
        (
            "ST",
            "-1",
            r"stream_timeout: a duration cannot be negative, got '-1' \(from '\$\{ST\}'\)$",
        ),
        (
            "RPM",
            "0",
            r"rpm: Input should be greater than or equal to 1 \(from 'os\.environ/RPM'\)$",
        ),
        ("TPM", "lots", r"tpm: Input should be a valid integer.* \(from 'os\.environ/TPM'\)$"),
    ):
        with pytest.raises(ConfigError, match=r"^model_list\[0\]\.litellm_params\." + expected):
            load(ENV_NUMBERS, env={**env, var: value})


def test_a_server_that_needs_no_key_is_served_without_one_when_its_variable_is_unset():
    config = load(
        """
model_list:
  - {model_name: a, litellm_params: {model: hosted_vllm/llama3, api_base: "http://gpu:8000/v1", api_key: os.environ/VLLM_KEY}}
  - {model_name: b, litellm_params: {model: ollama/llama3, api_key: os.environ/OLLAMA_KEY}}
  - {model_name: c, litellm_params: {model: openai/m, api_base: "http://gpu:9000/v1", api_key: os.environ/GPU_KEY}}
  - {model_name: d, litellm_params: {model: hosted_vllm/llama3, api_base: "http://gpu:8000/v1", api_key: os.environ/SET_KEY}}
  - {model_name: e, litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_KEY_2}}
""",
        env={"SET_KEY": "vllm-secret"},
    )
    a, b, c, d, e = config.gateway.deployments
    # As LiteLLM, which sends them no real key: the request goes out without Authorization.
    for deployment in (a, b, c):
        assert (deployment.api_key, deployment.missing_key, deployment.secrets) == (None, None, ())
        assert deployment.to_target().missing_key is None
    assert d.api_key == "vllm-secret"
    assert e.missing_key is not None  # OpenAI itself needs a key: 401 without a call
    assert config.warnings == (
        "deployments without an API key answer 401 until it is set: "
        "model_list[4] (set OPENAI_KEY_2)",
        "sending no API key where its variable is unset (a local or OpenAI-compatible server "
        "may need none): model_list[0].litellm_params.api_key (VLLM_KEY), "
        "model_list[1].litellm_params.api_key (OLLAMA_KEY), "
        "model_list[2].litellm_params.api_key (GPU_KEY)",
    )


ENTRA_ID = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: azure/a, api_base: "https://a.openai.azure.com", azure_ad_token: os.environ/AZURE_AD_TOKEN}
  - model_name: gpt-4o
    litellm_params:
      model: azure/b
      api_base: https://b.openai.azure.com
      tenant_id: os.environ/AZURE_TENANT_ID
      client_id: os.environ/AZURE_CLIENT_ID
      client_secret: os.environ/AZURE_CLIENT_SECRET
  - model_name: gpt-4o
    litellm_params:
      model: azure/c
      api_base: https://c.openai.azure.com
      client_id: os.environ/AZURE_CLIENT_ID
      azure_username: os.environ/AZURE_USERNAME
      azure_password: os.environ/AZURE_PASSWORD
  - model_name: gpt-4o
    litellm_params:
      model: azure/d
      api_base: https://d.openai.azure.com
      api_key: os.environ/D_KEY
      tenant_id: os.environ/AZURE_TENANT_ID
      client_id: os.environ/AZURE_CLIENT_ID
      client_secret: os.environ/AZURE_CLIENT_SECRET
  - model_name: gpt-4o
    litellm_params:
      model: azure/e
      api_base: https://e.openai.azure.com
      api_key: os.environ/E_KEY
      azure_ad_token: os.environ/E_TOKEN
  - model_name: gpt-4o
    litellm_params: {model: azure/f, api_base: "https://f.openai.azure.com"}
"""


def test_azure_entra_id_deployments_are_skipped_unless_litellm_would_use_their_key():
    env = {"D_KEY": "d-key", "E_KEY": "e-key", "E_TOKEN": "e-token", "AZURE_API_VERSION": "v"}
    gw = load(ENTRA_ID, env=env).gateway
    # LiteLLM's Azure client sends a token (given, or got with a username and password) in
    # place of the key, and uses the key before a client secret: llmpulse serves d and f only.
    assert [d.model for d in gw.deployments] == ["d", "f"]
    assert gw.deployments[0].api_key == "d-key"
    assert gw.warnings[:2] == (
        "skipping deployments with an auth method not supported: "
        "model_list[0] (Azure Entra ID: azure_ad_token), "
        "model_list[1] (Azure Entra ID: tenant_id, client_id, client_secret), "
        "model_list[2] (Azure Entra ID: client_id, azure_username, azure_password), "
        "model_list[4] (Azure Entra ID: azure_ad_token)",
        "deployments without an API key answer 401 until it is set: "
        "model_list[5] (set AZURE_API_KEY or AZURE_OPENAI_API_KEY)",
    )
    # A token variable that is unset leaves the key to authenticate, as in LiteLLM.
    gw = load(ENTRA_ID, env={k: v for k, v in env.items() if k != "E_TOKEN"}).gateway
    assert [d.model for d in gw.deployments] == ["d", "e", "f"]
    # LiteLLM's DefaultAzureCredential switch authenticates every keyless azure/ deployment.
    gw = load(ENTRA_ID + "litellm_settings: {enable_azure_ad_token_refresh: true}\n", env=env)
    assert [d.model for d in gw.gateway.deployments] == ["d"]
    assert gw.warnings[0].endswith(
        "model_list[5] (Azure Entra ID: litellm_settings.enable_azure_ad_token_refresh)"
    )
    # Nothing else to serve: one line naming why.
    with pytest.raises(ConfigError) as info:
        load("model_list: [{model_name: g, litellm_params: {model: azure/a, azure_ad_token: t}}]")
    assert str(info.value) == (
        "model_list: no deployment llmpulse can serve (a chat model of a provider and auth "
        "method it supports): model_list[0] (Azure Entra ID: azure_ad_token)"
    )


def test_an_empty_model_info_is_none_as_in_litellm():
    gw = load(
        "model_list:\n  - model_name: m\n    litellm_params: {model: openai/x}\n    model_info:\n"
    )
    assert [d.name for d in gw.gateway.deployments] == ["m/openai/x"]
