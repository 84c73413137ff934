"""Bad config input is bounded and answered with one line: ConfigError, or exit 2 from the CLI.

Alias bombs, deep nesting, invalid UTF-8, oversized and special files, YAML syntax errors and
non-finite or zero durations; then random documents, which may only ever load or raise
ConfigError. The YAML limits are checked with both loaders (libyaml's and PyYAML's own).
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmpulse import yamlfile
from llmpulse.config import ConfigError, load_config, parse_config
from llmpulse.yamlfile import MAX_BYTES, PURE_LOADER, YAMLFileError, read_yaml

ENV = {"OPENAI_API_KEY": "sk-secret-openai"}
LOADERS = [
    pytest.param(yamlfile.FAST_LOADER, id="libyaml"),
    pytest.param(yamlfile.PURE_LOADER, id="pure"),
]
assert yamlfile.FAST_LOADER is not None, "PyYAML without libyaml: the fast loader is untested"


def laughs(indent: str, levels: int = 9) -> list[str]:
    """The billion laughs: each anchor ten aliases of the one before, 10**levels strings."""
    lines = [f"{indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return lines


def in_litellm_params(*lines: str) -> str:
    """A LiteLLM file whose one deployment's ``litellm_params`` end with ``lines`` (line 5 on),
    which the gateway writes out whole (``json.dumps``) to name the deployment."""
    head = "model_list:\n  - model_name: chat\n    litellm_params:\n      model: openai/gpt-4o"
    return "\n".join([head, *(f"      {line}" for line in lines)])


BOMB_IN_LITELLM_PARAMS = in_litellm_params(*laughs(""))
# Each alias of a scalar is one node, however long the scalar: a 100 KB string and 200,000
# aliases of it (900 KB) once loaded, and the gateway then wrote out 20 GB.
SCALAR_FLOOD = in_litellm_params(
    f"prompt: &s {'x' * 100_000}", "junk: [" + ", ".join(["*s"] * 200_000) + "]"
)
# A 1 MB mapping aliased 3,000 times: 9,000 nodes, under the node limit, but 3 GB written out.
MAPPING_FLOOD = in_litellm_params(
    f"defaults: &m {{prompt: {'x' * 1_000_000}}}", "junk: [" + ", ".join(["*m"] * 3_000) + "]"
)
BOMB_IN_TARGETS = "\n".join(
    ["targets:", "  - provider: openai", "    headers:", *laughs("      "), "    rules: *l9"]
)


def write(tmp_path, text: str | bytes, name: str = "llmpulse.yaml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def config_error(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


def yaml_error(path, loader) -> str:
    with pytest.raises(YAMLFileError) as info:
        read_yaml(path, loader)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


def config_error_and_peak(path: Path) -> tuple[str, int]:
    """The one-line config error of ``path``, and the peak memory traced while loading it."""
    tracemalloc.start()
    try:
        message = config_error(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return message, peak


@pytest.mark.parametrize("text", [BOMB_IN_LITELLM_PARAMS, BOMB_IN_TARGETS])
def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path, text):
    path = write(tmp_path, text)
    assert len(text) < 1000
    message, peak = config_error_and_peak(path)
    assert "aliases expand to more than 10,000 nodes" in message
    assert message.startswith(f"{path}:")
    assert peak < 20 * 2**20


@pytest.mark.parametrize("loader", LOADERS)
def test_alias_limits_with_both_loaders(tmp_path, loader):
    bomb = yaml_error(write(tmp_path, BOMB_IN_LITELLM_PARAMS), loader)
    # The limit is crossed among l3's ten aliases of l2 (1,111 nodes each), anchored on line 7.
    assert bomb.startswith(f"{tmp_path / 'llmpulse.yaml'}:7:")
    assert "10,000 nodes" in bomb
    recursive = yaml_error(write(tmp_path, "a: &x\n  b: [1, *x]\n"), loader)
    assert "refers to the anchor that contains it" in recursive
    # Depth reached through an alias counts too: 60 levels used at the 60th.
    nested = "&deep " + "[" * 60 + "]" * 60
    deep = yaml_error(write(tmp_path, f"a: {nested}\nb: {'[' * 59}*deep{']' * 59}\n"), loader)
    assert "nested more than 100 levels deep" in deep


@pytest.mark.parametrize("text", [SCALAR_FLOOD, MAPPING_FLOOD], ids=["scalar", "mapping"])
def test_aliases_of_long_text_are_refused_by_their_characters(tmp_path, text):
    path = write(tmp_path, text)
    message, peak = config_error_and_peak(path)
    # Named at the anchor, on line 5.
    assert message.startswith(f"{path}:5:")
    assert message.endswith(
        ": YAML aliases expand to more than 8,000,000 characters, the limit "
        "(the last one expanded refers to the anchor here)"
    )
    assert peak < 20 * 2**20


@pytest.mark.parametrize("loader", LOADERS)
def test_aliases_of_scalars_count_with_both_loaders(tmp_path, loader):
    def scalar_aliases(count: int, anchor: str = "s: &s x\nl: [") -> str:
        return anchor + ", ".join(["*s"] * count) + "]\n"

    # One node each: 10,000 fit, one more does not, the anchor before them or among them.
    assert len(read_yaml(write(tmp_path, scalar_aliases(10_000)), loader)["l"]) == 10_000
    for text in (scalar_aliases(10_001), scalar_aliases(10_001, "l: [&s x, ")):
        message = yaml_error(write(tmp_path, text), loader)
        assert "aliases expand to more than 10,000 nodes" in message
    # Characters: a sequence of a million (1,001 nodes) fits eight times, not nine.
    million = "s: &s\n" + "".join(f"  - {'x' * 999}{i % 10}\n" for i in range(1000))
    path = write(tmp_path, million + "l: [" + ", ".join(["*s"] * 8) + "]\n")
    assert read_yaml(path, loader)["l"] == [read_yaml(path, loader)["s"]] * 8
    path = write(tmp_path, million + "l: [" + ", ".join(["*s"] * 9) + "]\n")
    assert yaml_error(path, loader).startswith(
        f"{path}:1:4: YAML aliases expand to more than 8,000,000 characters"
    )


@pytest.mark.parametrize("loader", LOADERS)
def test_merge_keys_and_aliases_below_the_limit_load_unchanged(tmp_path, loader):
    entries = "\n".join(
        f"  - model_name: m{i}\n    litellm_params:\n      <<: *defaults\n      model: openai/m{i}"
        for i in range(300)
    )
    text = (
        "model_list:\n  - model_name: base\n    litellm_params: &defaults\n"
        "      model: openai/gpt-4o\n      api_key: os.environ/OPENAI_API_KEY\n"
        "      timeout: 30\n      stream_timeout: 60\n"
        f"{entries}\nrouter_settings:\n  fallbacks: [{{m1: [m2]}}]\n"
    )
    path = write(tmp_path, text)
    assert read_yaml(path, loader) == yaml.safe_load(text)
    deployments = load_config(path, env=ENV).gateway.deployments
    assert len(deployments) == 301
    assert {(d.timeout, d.stream_timeout) for d in deployments} == {(30.0, 60.0)}
    assert deployments[7].model == "m6"


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(
    "text",
    [
        "targets: " + "[" * 100_000,
        "targets: " + "[" * 101 + "]" * 101,
        "".join(" " * i + f"k{i}:\n" for i in range(2000)),
        "- " * 5000 + "x",
        "targets: " + "{a: " * 300 + "1" + "}" * 300,
    ],
    ids=["unclosed-flow", "101-flow", "2000-block-mappings", "5000-block-sequences", "flow-maps"],
)
def test_deep_nesting_is_one_line_and_never_recursion(tmp_path, loader, text):
    message = yaml_error(write(tmp_path, text), loader)
    assert "nested more than 100 levels deep" in message or "nesting depth" in message


@pytest.mark.parametrize("loader", LOADERS)
def test_nesting_up_to_the_limit_loads(tmp_path, loader):
    assert read_yaml(write(tmp_path, "[" * 100 + "]" * 100), loader) is not None


def test_invalid_utf8_names_line_column_and_byte(tmp_path):
    path = write(tmp_path, b"targets:\n  - provider: openai\n    name: caf\xc3\xa9 \xff\n")
    assert config_error(path) == f"{path}:3:16: not UTF-8 text (byte 0xff at offset 46)"


@pytest.mark.parametrize("loader", LOADERS)
def test_control_characters_name_their_line_and_column(tmp_path, loader):
    # é is two bytes of UTF-8: libyaml's byte offset is turned into a column.
    message = yaml_error(write(tmp_path, "targets:\n  - provider: é\x07\n"), loader)
    assert message.startswith(f"{tmp_path / 'llmpulse.yaml'}:2:16: invalid YAML: ")
    assert "#x0007" in message


def test_a_file_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(MAX_BYTES + 1)  # sparse: nothing is written
    assert config_error(path) == f"{path}: larger than 32 MiB, the limit of a file"


def test_special_files_are_refused(tmp_path):
    assert config_error(tmp_path) == f"{tmp_path}: not a regular file"
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # reading it would block until a writer came
    assert config_error(fifo) == f"{fifo}: not a regular file"
    assert "cannot read the file" in config_error(tmp_path / "absent.yaml")


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(
    ("text", "position", "problem"),
    [
        ("targets:\n  - provider: openai\n    name: a: b\n", "3:12", "mapping values are not"),
        ("targets: [\n", None, "invalid YAML"),
        ("a: 1\n--- \nb: 2\n", "2:1", "expected a single document"),
        ("a: *nowhere\n", "1:4", "undefined alias"),
        ("a: !!python/object:os.system x\n", "1:4", "could not determine a constructor"),
        ("targets:\n  - max_tokens: " + "9" * 5000 + "\n", "2:17", "4300 digits"),
        ("silences:\n  - ends: 2026-13-45\n", "2:11", "month must be in 1..12"),
        ("? [1]\n: 2\n", "1:3", "unhashable key"),
    ],
)
def test_yaml_errors_are_one_line_with_file_line_column(tmp_path, loader, text, position, problem):
    path = write(tmp_path, text)
    message = yaml_error(path, loader)
    assert problem in message
    if position:
        assert message.startswith(f"{path}:{position}: invalid YAML: ")


def test_the_issue_example_of_a_yaml_error(tmp_path):
    path = write(tmp_path, "targets:\n  - provider: openai\n    name: a: b\n")
    assert config_error(path) == (
        f"{path}:3:12: invalid YAML: mapping values are not allowed in this context"
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("targets:\n  - provider: openai\n    interval: {}\n", "targets[0].interval"),
        ("targets:\n  - provider: openai\n    timeout: {}\n", "targets[0].timeout"),
        ("monitor: {{retry_interval: {}}}\ntargets: [{{provider: openai}}]\n",
         "monitor.retry_interval"),
        ("alerting: {{repeat_interval: {}}}\ntargets: [{{provider: openai}}]\n",
         "alerting.repeat_interval"),
        ("rules: {{error_rate_warning: {{window: {}}}}}\ntargets: [{{provider: openai}}]\n",
         "rules.error_rate_warning.window"),
        ("model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o\n"
         "      timeout: {}\n", "model_list[0].litellm_params.timeout"),
        ("model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]\n"
         "router_settings: {{timeout: {}}}\n", "router_settings.timeout"),
        ("model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]\n"
         "litellm_settings: {{request_timeout: {}}}\n", "litellm_settings.request_timeout"),
        ("model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]\n"
         "gateway: {{ttft_limit: {}}}\n", "gateway.ttft_limit"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "'inf'", "0", "0s", "-1", "1e400"])
def test_durations_must_be_finite_and_positive(tmp_path, text, key, value):
    message = config_error(write(tmp_path, text.format(value)))
    assert f": {key}: " in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]\n"
         "router_settings: {{retry_after: {}}}\n", "router_settings.retry_after"),
        ("model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]\n"
         "router_settings: {{cooldown_time: {}}}\n", "router_settings.cooldown_time"),
        ("alerting: {{group_wait: {}}}\ntargets: [{{provider: openai}}]\n", "alerting.group_wait"),
    ],
)  # fmt: skip
def test_zero_stays_valid_where_it_means_no_wait(tmp_path, text, key):
    load_config(write(tmp_path, text.format(0)), env=ENV)
    for value in (".nan", "-1", ".inf"):
        assert f": {key}: " in config_error(write(tmp_path, text.format(value)))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("targets: [{{provider: openai, tps_floor: {}}}]\n", "targets[0].tps_floor"),
        ("targets: [{{provider: openai, prices: {{input_per_mtok: {}, output_per_mtok: 1}}}}]\n",
         "targets[0].prices.input_per_mtok"),
        ("targets: [{{provider: openai}}]\nrules: {{tps_low: {{threshold: {}}}}}\n",
         "rules.tps_low.threshold"),
        ("model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o, weight: {}}}}}]\n",
         "model_list[0].litellm_params.weight"),
        ("model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}},"
         " model_info: {{input_cost_per_token: {}}}}}]\n",
         "model_list[0].model_info.input_cost_per_token"),
        ("model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]\n"
         "gateway: {{rate_limit_threshold: {}}}\n", "gateway.rate_limit_threshold"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_every_number_must_be_finite(tmp_path, text, key, value):
    assert f": {key}: " in config_error(write(tmp_path, text.format(value)))


def test_a_bad_rule_threshold_is_a_config_error_not_a_later_crash():
    raw = {"targets": [{"provider": "openai"}], "rules": {"ttft_p95_high": {"threshold": "abc"}}}
    with pytest.raises(ConfigError, match=r"rules\.ttft_p95_high\.threshold: expected a dur"):
        parse_config(raw, env=ENV)
    raw["rules"]["ttft_p95_high"]["threshold"] = "5s"
    assert parse_config(raw, env=ENV).rules["ttft_p95_high"].threshold == 5.0


def test_odd_keys_keep_errors_on_one_line():
    raw = {"targets": [{"provider": "openai", "[/x]\nfoo": 1}]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env=ENV)
    assert str(info.value) == "targets[0].'[/x]\\nfoo': unknown key"


def limited_memory(limit: int = 768 * 2**20):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("command", ["check", "gateway"])
@pytest.mark.parametrize(
    "text",
    [BOMB_IN_LITELLM_PARAMS, BOMB_IN_TARGETS, SCALAR_FLOOD, MAPPING_FLOOD],
    ids=["bomb-in-litellm-params", "bomb-in-targets", "scalar-flood", "mapping-flood"],
)
def test_the_cli_answers_a_bomb_with_one_line_and_exit_2(tmp_path, command, text):
    write(tmp_path, text, "bomb.yaml")
    env = {**os.environ, **ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "llmpulse", command, "--config", "bomb.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        preexec_fn=limited_memory(),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    # `check` prints its table, and so its errors, to stdout; the servers to stderr.
    output = proc.stdout + proc.stderr
    assert output.count("\n") == 1 and output.startswith("config error: bomb.yaml:")


@pytest.mark.parametrize("command", ["check", "run"])
def test_the_cli_answers_deep_nesting_with_one_line_and_exit_2(tmp_path, command):
    write(tmp_path, "targets: " + "[" * 100_000, "deep.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "llmpulse", command, "--config", "deep.yaml"],
        cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    output = proc.stdout + proc.stderr
    assert output.count("\n") == 1 and output.startswith("config error: deep.yaml:1:")


# ---- random documents: they load, or are refused with ConfigError -----------------------------

YAMLISH = st.text(
    alphabet=st.sampled_from([*"abt01.:-[]{},&*!<>|'\"#? \n\t", "\x00", "é", "\ufeff"]),
    max_size=60,
)
KEYS = st.sampled_from(
    ["targets", "model_list", "provider", "interval", "timeout", "litellm_params", "model",
     "model_name", "model_info", "router_settings", "fallbacks", "gateway", "listen", "<<",
     "name", "rules", "threshold", "monitor", "retry_interval", "notifiers", "type", "url",
     "silences", "ends", "web", "storage", "telemetry", "headers", "prices"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.sampled_from(["openai", "openai/gpt-4o", "30s", "0", "-1", "inf", ".nan", "os.environ/X"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(text=YAMLISH)
def test_random_yaml_text_loads_or_is_a_config_error(tmp_path, text):
    with contextlib.suppress(ConfigError):
        load_config(write(tmp_path, text), env=ENV)


@FUZZ
@given(text=YAMLISH)
def test_the_loaders_read_what_pyyaml_reads(tmp_path, text):
    # Their shortcuts (a cache of tags, plain strings built directly) change no result.
    path = write(tmp_path, text)
    for ours, stock in ((yamlfile.FAST_LOADER, yaml.CSafeLoader), (PURE_LOADER, yaml.SafeLoader)):
        try:
            document = read_yaml(path, ours)
        except YAMLFileError as exc:
            assert "\n" not in str(exc)
            continue
        assert repr(document) == repr(yaml.load(text, Loader=stock))


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: x\na: 2\n",  # a repeated key: the last one wins
        "base: &b {x: 1, y: two}\nm: {<<: *b, y: 3}\nn: {<<: [*b, {z: 4}], x: 5}\n",
        "m: {=: 1, k: v}\n",  # the value key
        "1: a\n~: b\ntrue: c\n2026-01-01: d\n'q': e\n!!str 5: f\n",
        "? [1, 2]\n: pair\n",
        "a: &s text\nb: {*s : *s, k: [*s]}\n",
    ],
    ids=["repeated", "merge", "value-key", "typed-keys", "complex-key", "aliased-keys"],
)
def test_mappings_read_as_pyyaml_reads_them(tmp_path, text):
    # Mappings whose keys are all strings are built directly, the others by PyYAML.
    path = write(tmp_path, text)
    for ours, stock in ((yamlfile.FAST_LOADER, yaml.CSafeLoader), (PURE_LOADER, yaml.SafeLoader)):
        try:
            expected = repr(yaml.load(text, Loader=stock))
        except yaml.YAMLError as exc:
            assert "unhashable" in str(exc)
            assert "unhashable key" in yaml_error(path, ours)
            continue
        assert repr(read_yaml(path, ours)) == expected


@FUZZ
@given(document=st.dictionaries(KEYS, VALUES, max_size=4))
def test_random_documents_load_or_are_one_line_config_errors(tmp_path, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        load_config(write(tmp_path, text), env=ENV)
    except ConfigError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
