"""LiteLLM proxy configs as LiteLLM's own repository and docs write them (tests/fixtures/litellm,
each naming what it is modelled on), with dummy values for their ``os.environ/`` references:
each comes up, saying what it skips or accepts in one warning line per concern, or is refused
in one line. A few are served by a real ``llmpulse gateway`` process, started with LiteLLM's
flags, against the simulator."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anthropic
import httpx
import openai
import pytest
import yaml

from conftest import LiveGateway, base_url
from llmpulse.config import ConfigError, load_config
from llmpulse.config.gateway import GatewayConfig
from llmpulse.sim.server import SimServer
from test_gateway_proxy import FAST, upstream

FIXTURES = Path(__file__).parent / "fixtures" / "litellm"

# Dummy values for every variable the fixtures reference. MISTRAL_API_KEY, DEEPSEEK_API_KEY and
# OPENROUTER_API_KEY stay unset: deployments relying on them load without a key; so do
# VLLM_API_KEY, AZURE_TENANT_ID, AZURE_CLIENT_SECRET and the SageMaker variables.
ENV = {
    name: f"dummy-{name.lower().replace('_', '-')}"
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GROQ_API_KEY",
        "GEMINI_API_KEY",
        "AZURE_API_KEY",
        "COHERE_API_KEY",
        "SILICONFLOW_API_KEY",
        "ZHIPU_API_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "APORIA_API_KEY_1",
        "LANGFUSE_PROJECT1_PUBLIC",
        "LANGFUSE_PROJECT1_SECRET",
        "LITELLM_MASTER_KEY",
        "AZURE_AD_TOKEN",
        "AZURE_CLIENT_ID",
        "AZURE_USERNAME",
        "AZURE_PASSWORD",
    )
} | {
    "AZURE_API_BASE": "https://dummy.openai.azure.com",
    "FAKE_OPENAI_API_BASE": "https://fake-openai.example/v1",
    "APORIA_API_BASE_1": "https://aporia.example",
    "SLACK_WEBHOOK_URL": "https://hooks.example/1",
    "SLACK_WEBHOOK_URL_2": "https://hooks.example/2",
    "REQUEST_TIMEOUT": "30",
    "STREAM_TIMEOUT": "5",
    "OPENAI_RPM": "500",
}
ENV_SECRETS = [
    v for k, v in ENV.items() if any(w in k for w in ("KEY", "SECRET", "TOKEN", "PASSWORD"))
]
KEY_VARIABLES = (
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY",
    "VLLM_API_KEY",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    *ENV,
)

NOT_CHAT = "skipping deployments that are not chat models"
PROVIDER = "skipping deployments of providers llmpulse does not speak yet"
AUTH = "skipping deployments with an auth method not supported"
DROPPED = "ignoring fallbacks and aliases that name only skipped deployments"
AZURE = "azure deployments without api_version use 2025-02-01-preview (LiteLLM's default)"
KEYLESS = "deployments without an API key answer 401 until it is set"
NO_KEY = (
    "sending no API key where its variable is unset (a local or OpenAI-compatible server may "
    "need none)"
)
LITERAL = "keys written in the file are used as written and kept secret"
IGNORED = "ignoring settings llmpulse does not act on"
NOTHING = (
    "model_list: no deployment llmpulse can serve (a chat model of a provider and auth method it "
    "supports)"
)


@dataclasses.dataclass(frozen=True)
class Case:
    served: tuple[str, ...] = ()  # the model groups the gateway serves
    # The warning lines, in order; IGNORED alone stands for its line, whatever it lists.
    warnings: tuple[str, ...] = ()
    literal: tuple[str, ...] = ()  # secrets written in the file
    error: str | None = None  # refused at load with this one line (after the file's name)
    access_control: tuple[str, ...] = ()  # what `llmpulse gateway` refuses unless accepted


CASES = {
    "simple_config.yaml": Case(served=("gpt-3.5-turbo",)),
    "aliases_config.yaml": Case(served=("text-davinci-003", "gpt-4", "gpt-3.5-turbo")),
    "macos_optimized_config.yaml": Case(
        served=("gpt-4", "claude-3-opus", "gemini-pro", "local-llama"), warnings=(IGNORED,)
    ),
    "load_balancer.yaml": Case(
        served=("gpt-3.5-turbo",),
        warnings=(
            f"{PROVIDER}: model_list[3] (mistralai/)",
            f"{KEYLESS}: model_list[2] (set OPENROUTER_API_KEY)",
            f"{LITERAL}: model_list[0].litellm_params.api_key, model_list[1].litellm_params.api_key",
            f"{IGNORED}: environment_variables",
        ),
        literal=("sk-uj6F", "sk-Imn"),
    ),
    "azure_config.yaml": Case(
        served=("gpt-4-team1", "gpt-4-team2"), warnings=(f"{AZURE}: model_list[1]", IGNORED)
    ),
    "azure_config_with_tpm.yaml": Case(
        served=("gpt-3.5-turbo",),
        warnings=(
            f"{AZURE}: model_list[0], model_list[1]",
            f"{LITERAL}: model_list[0].litellm_params.api_key, model_list[1].litellm_params.api_key",
        ),
        literal=("73g", "9kj"),
    ),
    "oai_misc_config.yaml": Case(
        served=("gpt-5-mini-end-user-test", "*", "anthropic/*", "groq/*"),
        warnings=(
            f"{NOT_CHAT}: model_list[4] (mode: batch)",
            f"{LITERAL}: general_settings.master_key",
            IGNORED,
        ),
        literal=("sk-1234",),
    ),
    "enterprise_config.yaml": Case(
        served=("gpt-4",),
        warnings=(f"{LITERAL}: model_list[0].litellm_params.api_key", IGNORED),
        literal=("fake-key",),
    ),
    "otel_test_config.yaml": Case(
        served=("fake-openai-endpoint", "llava-hf"),
        warnings=(
            f"{PROVIDER}: model_list[2] (cohere/)",
            f"{LITERAL}: model_list[0].litellm_params.api_key, "
            "model_list[1].litellm_params.api_key, model_list[3].litellm_params.api_key",
            IGNORED,
        ),
        literal=("fake-key",),
    ),
    "proxy_config.yaml": Case(
        served=("gemini-vision", "fake-azure-endpoint"),
        warnings=(
            f"{KEYLESS}: model_list[0] (no file at vertex_credentials)",  # LiteLLM's api_base
            f"{LITERAL}: model_list[2].litellm_params.api_key, general_settings.master_key",
            IGNORED,
        ),
        literal=("fake-key", "sk-1234"),
    ),
    "multi_instance_simple_config.yaml": Case(
        served=("fake-openai-endpoint",),
        warnings=(f"{LITERAL}: model_list[0].litellm_params.api_key", IGNORED),
        literal=("my-fake-key",),
    ),
    "missing_keys.yaml": Case(
        served=("mistral-small", "deepseek-chat", "gpt-4o"),
        warnings=(
            f"{KEYLESS}: model_list[0] (set MISTRAL_API_KEY), model_list[1] (set DEEPSEEK_API_KEY)",
        ),
    ),
    "auto_router.yaml": Case(
        served=("fast", "capable", "bedrock-claude"),
        warnings=(
            f"{PROVIDER}: model_list[2] (auto_router/)",
            f"{DROPPED}: router_settings.fallbacks ('auto')",
        ),
    ),
    "reliability.yaml": Case(
        served=("gpt-4o", "claude"),
        warnings=(f"{LITERAL}: router_settings.redis_password",),
        literal=("hunter2-redis",),
    ),
    "local_servers.yaml": Case(
        served=("llama-3", "internal-gpt"),
        # JWT switched off and an empty allowlist ask for nothing: not even "ignored".
        warnings=(
            f"{LITERAL}: model_list[0].litellm_params.api_key, "
            "model_list[1].litellm_params.extra_headers.Authorization",
        ),
        literal=("none", "Bearer internal-literal-token"),
    ),
    "azure_entra_id.yaml": Case(
        served=("gpt-3.5-turbo",),
        warnings=(
            f"{AUTH}: model_list[0] (Azure Entra ID: azure_ad_token), "
            "model_list[2] (Azure Entra ID: client_id, azure_username, azure_password)",
            f"{DROPPED}: router_settings.fallbacks ('gpt-3.5-turbo-user')",
            IGNORED,
        ),
    ),
    "timeouts_from_env.yaml": Case(
        served=("gpt-4o", "llama-3"),
        warnings=(
            f"{PROVIDER}: model_list[2] (sagemaker/)",
            f"{NO_KEY}: model_list[1].litellm_params.api_key (VLLM_API_KEY)",
        ),
    ),
    "health_check_embedding.yaml": Case(error=f"{NOTHING}: model_list[0] (mode: embedding)"),
    "china_domestic_free_sources.yaml": Case(
        error=f"{NOTHING}: model_list[0] (siliconflow/), model_list[1] (siliconflow/), "
        "model_list[2] (zhipu/)"
    ),
    "okta_jwt_auth_config.yaml": Case(
        served=("gpt-4o",),
        warnings=(f"{IGNORED}: environment_variables",),
        access_control=("general_settings.enable_jwt_auth", "general_settings.litellm_jwtauth"),
    ),
    "pass_through_config.yaml": Case(
        served=("fake-openai-endpoint", "claude-sonnet-4-5-20250929", "anthropic/*", "openai/*"),
        warnings=(f"{LITERAL}: model_list[0].litellm_params.api_key", IGNORED),
        literal=("fake-key",),
        access_control=("general_settings.custom_auth",),
    ),
    "access_control.yaml": Case(
        served=("gpt-4o",),
        warnings=(f"{IGNORED}: general_settings.public_routes",),
        access_control=(
            "general_settings.allowed_routes",
            "general_settings.admin_only_routes",
            "general_settings.allowed_ips",
        ),
    ),
}


def test_every_fixture_has_its_expectations() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.yaml")) == sorted(CASES)
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_config_comes_up_or_is_refused_in_one_line(name: str) -> None:
    case, path = CASES[name], FIXTURES / name
    if case.error is not None:
        with pytest.raises(ConfigError) as info:
            load_config(path, env=ENV)
        assert str(info.value) == f"{path}: {case.error}"
        return
    config = load_config(path, env=ENV)
    gateway = config.gateway
    assert gateway is not None
    assert [g.name for g in gateway.groups] == list(case.served)
    assert len(config.warnings) == len(case.warnings), config.warnings
    for line, expected in zip(config.warnings, case.warnings, strict=True):
        assert line == expected or (expected == IGNORED and line.startswith(f"{IGNORED}: "))
    concerns = [line.split(": ", 1)[0] for line in config.warnings]
    assert len(set(concerns)) == len(concerns)  # one line per concern
    assert not [w for w in config.warnings if "\n" in w]
    # Secrets, written or referenced, are never shown, and each written one is where secrets
    # are collected.
    shown = "\n".join(config.warnings) + repr(config)
    assert not [s for s in (*case.literal, *ENV_SECRETS) if s in shown]
    assert set(case.literal) <= secrets(gateway)
    # Access control it does not enforce: the monitor loads the file, the gateway refuses it.
    assert gateway.unenforced_auth == case.access_control
    if case.access_control:
        with pytest.raises(ConfigError, match="--accept-unenforced-auth"):
            gateway.auth_warning(accept=False)
    else:
        assert gateway.auth_warning(accept=False) is None


def test_what_loads_from_the_environment_and_which_azure_deployments_use_a_key() -> None:
    gateway = load_config(FIXTURES / "timeouts_from_env.yaml", env=ENV).gateway
    gpt, llama = gateway.deployments
    assert (gpt.id, gpt.timeout, gpt.stream_timeout, gpt.rpm) == ("1", 30, 5, 500)
    assert (llama.id, llama.api_key, llama.missing_key) == ("2", None, None)
    gateway = load_config(FIXTURES / "azure_entra_id.yaml", env=ENV).gateway
    assert [(d.model, d.api_key) for d in gateway.deployments] == [
        ("chatgpt-v-2", ENV["AZURE_API_KEY"]),  # its client secret comes after the key
        ("chatgpt-v-3", ENV["AZURE_API_KEY"]),
    ]


def secrets(gateway: GatewayConfig) -> set[str]:
    """Where the gateway config holds secrets: keys, header values, gateway keys, Redis URL."""
    found = {d.api_key for d in gateway.deployments if d.api_key}
    found |= {v for d in gateway.deployments for v in d.headers.values()}
    found |= {k.secret for k in gateway.settings.keys if k.secret}
    if gateway.settings.redis_url:
        found.add(unquote(urlsplit(gateway.settings.redis_url).password or ""))
    return found


# --- a real `llmpulse gateway` process -------------------------------------------------------

SIM_PROVIDERS = ("openai", "azure", "anthropic")


def at_sim(sim: SimServer, raw: dict[str, Any]) -> dict[str, Any]:
    """The file with its OpenAI, Azure and Anthropic deployments pointed at the simulator, each
    model a fresh simulated one named after the file's, so nothing else changes."""
    for entry in raw["model_list"]:
        params = entry["litellm_params"]
        prefix, sep, model = params["model"].rpartition("/")
        provider = prefix if sep else "openai"
        if provider not in SIM_PROVIDERS or "*" in model:
            continue
        fresh = f"{model}-{uuid.uuid4().hex[:8]}"
        httpx.patch(f"{sim.url}/_sim/models/{fresh}", json=FAST, timeout=10).raise_for_status()
        params["model"] = f"{prefix}{sep}{fresh}"
        params["api_base"] = base_url(sim, provider)
    return raw


class GatewayProcess(LiveGateway):
    """``llmpulse gateway ARGS`` on a free loopback port, its stderr kept, in
    ``gateway_env``'s environment."""

    def __init__(self, tmp_path: Path, config: Path, *args: str) -> None:
        super().__init__(tmp_path, config, *args, env=gateway_env(tmp_path))

    def openai(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=20)

    def anthropic(self, key: str = "none") -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=20)


def gateway_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    return {**env, **ENV, "XDG_DATA_HOME": str(tmp_path / "data")}


def config_warnings(health: dict[str, Any]) -> list[str]:
    """``/health``'s warnings but the one a busy machine may add: the port after the gateway's
    (its default /metrics port) taken by something else."""
    return [w for w in health["warnings"] if not w.startswith("/metrics has no port of its own")]


def hi(client: openai.OpenAI, model: str) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def served_fixture(sim: SimServer, tmp_path: Path, name: str) -> tuple[Path, dict[str, Any]]:
    raw = at_sim(sim, yaml.safe_load((FIXTURES / name).read_text()))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def test_literal_keys_skipped_providers_and_litellm_flags_serve(
    sim: SimServer, tmp_path: Path
) -> None:
    path, raw = served_fixture(sim, tmp_path, "load_balancer.yaml")
    first, second = (raw["model_list"][i]["litellm_params"]["model"] for i in (0, 1))
    flags = ("--host", "127.0.0.1", "--num_workers", "1", "--run_gunicorn", "--detailed_debug")
    with GatewayProcess(tmp_path, path, *flags) as gateway:
        answers = {hi(gateway.openai(), "gpt-3.5-turbo").model for _ in range(4)}
        health = httpx.get(f"{gateway.url}/health", timeout=10).json()
    # The keyless OpenRouter deployment of the group never takes traffic while a keyed one can.
    assert answers <= {first, second} and answers
    assert {r["status"] for r in upstream(sim, first) + upstream(sim, second)} == {200}
    stderr = gateway.log.read_text()
    flag_warning = (
        "ignoring LiteLLM's --run_gunicorn: llmpulse serves with uvicorn; --num_workers N runs "
        "N worker processes"
    )
    assert config_warnings(health) == [*CASES["load_balancer.yaml"].warnings, flag_warning]
    for line in health["warnings"]:
        assert stderr.count(f"warning: {line}\n") == 1
    assert "sk-uj6F" not in stderr and "sk-Imn" not in stderr


def test_azure_without_api_version_serves_on_litellms_default(
    sim: SimServer, tmp_path: Path
) -> None:
    path, raw = served_fixture(sim, tmp_path, "azure_config_with_tpm.yaml")
    with GatewayProcess(tmp_path, path) as gateway:
        reply = hi(gateway.openai(), "gpt-3.5-turbo")
    deployment = reply.model
    assert deployment in {
        e["litellm_params"]["model"].removeprefix("azure/") for e in raw["model_list"]
    }
    assert {r["status"] for r in upstream(sim, deployment)} == {200}


def test_deployments_without_a_key_answer_401_in_both_shapes_or_fall_back(
    sim: SimServer, tmp_path: Path
) -> None:
    path, raw = served_fixture(sim, tmp_path, "missing_keys.yaml")
    gpt = raw["model_list"][2]["litellm_params"]["model"].removeprefix("openai/")
    with GatewayProcess(tmp_path, path) as gateway:
        with pytest.raises(openai.AuthenticationError) as oai:
            hi(gateway.openai(), "mistral-small")
        with pytest.raises(anthropic.AuthenticationError) as ant:
            gateway.anthropic().messages.create(
                model="mistral-small", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        fallen = hi(gateway.openai(), "deepseek-chat")
        health = httpx.get(f"{gateway.url}/health", timeout=10).json()
    hint = "no API key for mistral: set MISTRAL_API_KEY, or model_list[0].litellm_params.api_key"
    assert oai.value.status_code == 401 and oai.value.body["message"] == hint
    assert ant.value.status_code == 401 and ant.value.body["error"]["message"] == hint
    assert fallen.model == gpt  # deepseek-chat's fallback took it
    assert config_warnings(health) == list(CASES["missing_keys.yaml"].warnings)


def run_gateway(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmpulse", "gateway", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=gateway_env(tmp_path),
        timeout=60,
    )


def test_unenforced_access_control_is_refused_unless_accepted(
    sim: SimServer, tmp_path: Path
) -> None:
    path, _ = served_fixture(sim, tmp_path, "okta_jwt_auth_config.yaml")
    refused = run_gateway(tmp_path, path, "--port", "0")
    assert refused.returncode == 2
    assert " ".join(refused.stderr.split()).endswith(
        f"config error: {path}: general_settings.enable_jwt_auth, "
        "general_settings.litellm_jwtauth: access control llmpulse does not enforce (it checks "
        "gateway keys only); remove it, or pass --accept-unenforced-auth to serve without it"
    )
    with GatewayProcess(tmp_path, path, "--accept-unenforced-auth") as gateway:
        hi(gateway.openai(), "gpt-4o")
        health = httpx.get(f"{gateway.url}/health", timeout=10).json()
    accepted = (
        "serving without access control the config asks for (general_settings.enable_jwt_auth, "
        "general_settings.litellm_jwtauth): llmpulse checks only general_settings.master_key and "
        "gateway.keys"
    )
    assert health["warnings"][-1] == accepted
    assert gateway.log.read_text().count(f"warning: {accepted}\n") == 1


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        # LiteLLM binds 0.0.0.0 by default; llmpulse binds it only when told, and with keys.
        (
            ("--host", "0.0.0.0"),
            "--host 0.0.0.0: not a loopback address, so the gateway needs keys",
        ),
        (
            ("--listen", "127.0.0.1:4000", "--port", "4001"),
            "--listen: pass either --listen or --host/--port",
        ),
        (("--ssl_keyfile_path", "key.pem"), "No such option '--ssl_keyfile_path'"),
    ],
)
def test_litellm_cli_flags_that_would_weaken_security_are_refused(
    tmp_path: Path, args: tuple[str, ...], refusal: str
) -> None:
    result = run_gateway(tmp_path, FIXTURES / "simple_config.yaml", *args)
    assert result.returncode == 2 and refusal in " ".join(result.stderr.split())
