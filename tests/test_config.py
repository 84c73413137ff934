import pytest

from llmpulse.config import ConfigError, discover_targets, load_config, parse_config
from llmpulse.result import CheckKind

ENV = {"OPENAI_API_KEY": "sk-secret-openai", "ANTHROPIC_API_KEY": "sk-ant-secret"}


def write(tmp_path, text):
    path = tmp_path / "llmpulse.yaml"
    path.write_text(text)
    return path


def test_minimal_target_gets_preset_defaults(tmp_path):
    path = write(
        tmp_path,
        """
targets:
  - provider: openai
    model: gpt-4o-mini
    api_key: os.environ/OPENAI_API_KEY
    timeout: 15s
    interval: 1m
""",
    )
    config = load_config(path, env=ENV)
    (t,) = config.targets
    assert t.name == "openai/gpt-4o-mini"
    assert t.base_url == "https://api.openai.com/v1"
    assert t.protocol == "openai"
    assert t.api_key == "sk-secret-openai"
    assert t.checks == (CheckKind.MODELS, CheckKind.INFERENCE, CheckKind.STREAM)
    assert (t.timeout, t.interval) == (15.0, 60.0)
    assert t.max_tokens_field == "max_completion_tokens"
    assert "sk-secret" not in repr(t)


def test_dollar_brace_reference_and_overrides():
    config = parse_config(
        {
            "targets": [
                {
                    "name": "claude",
                    "provider": "anthropic",
                    "model": "claude-haiku-4-5",
                    "api_key": "${ANTHROPIC_API_KEY}",
                    "checks": ["stream"],
                    "prices": {"input_per_mtok": 1, "output_per_mtok": 5},
                    "context_window": 200000,
                }
            ]
        },
        env=ENV,
    )
    (t,) = config.targets
    assert t.api_key == "sk-ant-secret"
    assert t.checks == (CheckKind.STREAM,)
    assert t.prices.output_per_mtok == 5
    assert t.context_window == 200000


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            {"provider": "openai", "timeout": "3x"},
            r"targets\[0\]\.timeout: expected a duration.*'3x'",
        ),
        ({"provider": "nope"}, r"targets\[0\]\.provider: unknown provider; expected one of openai"),
        ({"provider": "openai", "checks": ["ping"]}, r"targets\[0\]\.checks\[0\]: .*'ping'"),
        ({"provider": "openai", "intervall": "5s"}, r"targets\[0\]\.intervall: unknown key"),
        ({"model": "x"}, r"targets\[0\]\.provider: required key is missing"),
        ({"provider": "openai-compatible", "model": "m"}, r"'base_url' is required"),
        (
            {"provider": "azure", "model": "m", "base_url": "https://x"},
            r"'api_version' is required",
        ),
        ({"provider": "openai", "max_tokens": 0}, r"targets\[0\]\.max_tokens: .*greater than"),
    ],
)
def test_errors_name_the_key_path_value_and_expectation(target, expected):
    target.setdefault("api_key", "os.environ/OPENAI_API_KEY")
    with pytest.raises(ConfigError, match=expected):
        parse_config({"targets": [target]}, env=ENV)


def test_literal_key_is_refused_and_never_echoed():
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"targets": [{"provider": "openai", "api_key": "sk-live-literal-key-123"}]}, env=ENV
        )
    assert "targets[0].api_key: must reference an environment variable" in str(info.value)
    assert "sk-live" not in str(info.value)


def test_unknown_key_value_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [{"provider": "openai", "apikey": "sk-pasted-secret"}]}, env=ENV)
    assert "apikey: unknown key" in str(info.value)
    assert "sk-pasted" not in str(info.value)


def test_missing_environment_variable_is_a_config_error():
    with pytest.raises(ConfigError, match=r"targets\[0\]\.api_key: environment variable NOPE"):
        parse_config({"targets": [{"provider": "openai", "api_key": "os.environ/NOPE"}]}, env={})


def test_duplicate_names_and_empty_targets():
    with pytest.raises(ConfigError, match="duplicate target name"):
        parse_config({"targets": [{"provider": "openai"}, {"provider": "openai"}]}, env=ENV)
    with pytest.raises(ConfigError, match="targets"):
        parse_config({"targets": []}, env=ENV)
    with pytest.raises(ConfigError, match="mapping"):
        parse_config(["x"], env=ENV)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "targets: [\n"), env=ENV)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", env=ENV)


def test_discovery_uses_standard_variables():
    env = {
        "OPENAI_API_KEY": "a",
        "GOOGLE_API_KEY": "g",
        "GROQ_API_KEY": "q",
        "XAI_API_KEY": "x",
        "UNRELATED": "z",
    }
    targets = discover_targets(env)
    assert [t.provider for t in targets] == ["openai", "groq", "gemini", "xai"]
    gemini = next(t for t in targets if t.provider == "gemini")
    assert gemini.api_key == "g"
    assert all(t.model for t in targets)
    assert discover_targets({}) == []


def test_azure_target():
    (t,) = parse_config(
        {
            "targets": [
                {
                    "provider": "azure",
                    "model": "gpt-4o",
                    "deployment": "prod-4o",
                    "base_url": "https://res.openai.azure.com/",
                    "api_version": "2024-10-21",
                    "api_key": "os.environ/AZ",
                }
            ]
        },
        env={"AZ": "k"},
    ).targets
    assert t.protocol == "azure"
    assert t.base_url == "https://res.openai.azure.com"


def test_groq_has_a_default_tps_floor_that_a_target_overrides():
    config = parse_config(
        {
            "targets": [
                {"provider": "groq", "api_key": "os.environ/GROQ_API_KEY"},
                {
                    "provider": "groq",
                    "name": "g2",
                    "api_key": "os.environ/GROQ_API_KEY",
                    "tps_floor": 250,
                },
                {"provider": "openai", "api_key": "os.environ/OPENAI_API_KEY"},
            ]
        },
        env={**ENV, "GROQ_API_KEY": "gsk-secret"},
    )
    assert [t.tps_floor for t in config.targets] == [100, 250, None]


def test_spend_top_n_is_bounded_and_named_when_wrong():
    target = {"name": "t", "provider": "openai", "model": "m", "api_key": "${OPENAI_API_KEY}"}
    env = {"OPENAI_API_KEY": "sk-x"}
    assert parse_config({"targets": [target]}, env=env).monitor.spend_top_n == 1000
    config = parse_config({"targets": [target], "monitor": {"spend_top_n": 50}}, env=env)
    assert config.monitor.spend_top_n == 50
    for bad in (0, 1_000_000, "many"):
        with pytest.raises(ConfigError, match=r"monitor\.spend_top_n"):
            parse_config({"targets": [target], "monitor": {"spend_top_n": bad}}, env=env)
