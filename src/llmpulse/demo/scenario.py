"""The demo's script: simulated providers and their official status pages, a looping incident
timeline, and the config that monitors them.

Everything is written for speed 1. At ``speed`` N the simulator replays the timeline N times
faster (its own ``speed``), every other duration (model TTFTs, check intervals, rule windows,
``for`` and clear windows, the TTFT threshold, ``resolve_after``, ``group_wait``, retries, the
status page interval) is divided by N and every rate (tokens/s and its floor) multiplied by N:
the same alerts fire and resolve in the same order, N times sooner. The monitor's config uses
only the normal keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llmpulse.probe.official import SourceKind
from llmpulse.rules import OFFICIAL_STATUS_RULE
from llmpulse.sim.scenario import Scenario, parse_scenario

PERIOD_S = 150.0  # the script repeats every 2½ minutes, so a demo left open stays lively
INTERVAL_S = 5.0  # every target is checked every 5 s (each check kind once per interval)
STATUS_INTERVAL_S = 5.0  # every official status page is read every 5 s
KEY_VAR = "LLMPULSE_DEMO_KEY"
KEY = "sk-demo"  # the simulator takes any non-empty key; the config only references it
_DURATIONS = frozenset({"ttft"})
_RATES = frozenset({"tokens_per_s"})


@dataclasses.dataclass(frozen=True, slots=True)
class DemoModel:
    provider: str  # a real preset, pointed at the simulator
    model: str
    api: str  # the simulator's wire format: openai, anthropic or gemini
    behavior: Mapping[str, Any]  # the simulator's model behaviour at speed 1
    tps_floor: float | None = None
    components: tuple[str, ...] = ("API",)  # on its official status page
    status_format: SourceKind = "statuspage"  # how that page is served, as the real one is

    @property
    def target(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    at: float  # seconds into each period, at speed 1
    set: Mapping[str, Any]  # behaviour change, at speed 1
    says: str  # what the terminal prints when it happens


@dataclasses.dataclass(frozen=True, slots=True)
class Incident:
    """Scripted changes of a model's behaviour or, in ``OFFICIAL``, of its provider's page."""

    model: DemoModel
    rule: str  # the alert it raises (for the outage: the availability incident's lead rule)
    story: str
    steps: tuple[Step, ...]

    @property
    def start(self) -> float:
        return self.steps[0].at

    @property
    def end(self) -> float:
        return self.steps[-1].at


OPENAI = DemoModel(
    "openai", "gpt-4o-mini", "openai",
    {"served_model": "gpt-4o-mini-2024-07-18", "ttft": 0.4, "tokens_per_s": 80, "jitter": 0.1},
    components=("Chat Completions", "Responses", "Conversations"),  # the API's two, ChatGPT's
)  # fmt: skip
ANTHROPIC = DemoModel(
    "anthropic", "claude-haiku-4-5", "anthropic",
    {"served_model": "claude-haiku-4-5-20251001", "ttft": 0.5, "tokens_per_s": 90,
     "jitter": 0.1, "context_window": 200000},
    components=("claude.ai", "Claude API (api.anthropic.com)", "Claude Code"),
)  # fmt: skip
GROQ = DemoModel(
    "groq", "llama-3.1-8b-instant", "openai",
    {"ttft": 0.15, "tokens_per_s": 500, "output_tokens": 64, "x_groq": True, "jitter": 0.1},
    tps_floor=150,
)  # fmt: skip
MISTRAL = DemoModel(
    "mistral", "mistral-small-latest", "openai",
    {"ttft": 0.3, "tokens_per_s": 120, "jitter": 0.1,
     "ratelimit": {"requests_limit": 1000, "requests_remaining": 700}},
)  # fmt: skip
DEEPSEEK = DemoModel(
    "deepseek", "deepseek-chat", "openai", {"ttft": 0.6, "tokens_per_s": 40, "jitter": 0.1}
)
GEMINI = DemoModel(  # the control: healthy throughout
    "gemini", "gemini-2.5-flash", "gemini",
    {"ttft": 0.6, "tokens_per_s": 150, "jitter": 0.1, "context_window": 1048576},
    components=("Vertex Gemini API",), status_format="google",  # Google Cloud's incidents.json
)  # fmt: skip
MODELS = (OPENAI, ANTHROPIC, GROQ, MISTRAL, DEEPSEEK, GEMINI)


def _used(fraction: float) -> dict[str, Any]:
    return {"ratelimit": {"requests_remaining": round(1000 * (1 - fraction))}}


INCIDENTS = (
    Incident(
        OPENAI, "ttft_p95_high", "time to first token 0.4 s → 2 s → 5 s, then back",
        (Step(10, {"ttft": 2.0}, "time to first token climbs from 0.4 s to 2 s"),
         Step(20, {"ttft": 5.0}, "time to first token reaches 5 s (threshold 3 s)"),
         Step(50, {"ttft": 0.4}, "time to first token back to 0.4 s")),
    ),
    Incident(
        ANTHROPIC, "consecutive_unavailable", "every call answers 529 overloaded for 35 s",
        (Step(15, {"errors": {"529": 1.0}}, "every call answers 529 overloaded"),
         Step(50, {"errors": {}}, "answers again")),
    ),
    Incident(
        GROQ, "tps_low", "tokens/s 500 → 40 (its tps_floor is 150), then back",
        (Step(25, {"tokens_per_s": 40}, "tokens/s drops from 500 to 40 (floor 150)"),
         Step(60, {"tokens_per_s": 500}, "tokens/s back to 500")),
    ),
    Incident(
        MISTRAL, "rate_limit_headroom", "rate-limit use 30 % → 55 → 75 → 90 %, then 30 %",
        (Step(35, _used(0.55), "rate limit 55 % used"),
         Step(45, _used(0.75), "rate limit 75 % used (threshold 70 %)"),
         Step(55, _used(0.90), "rate limit 90 % used"),
         Step(70, _used(0.30), "rate limit back to 30 % used")),
    ),
    Incident(
        DEEPSEEK, "tokens_per_request_spike", "~3,000 input tokens per call instead of ~10",
        (Step(45, {"input_tokens": 3000}, "every call now counts ~3,000 input tokens"),
         Step(80, {"input_tokens": None}, "input tokens back to normal")),
    ),
)  # fmt: skip

# As in real life, the official pages lag behind what we measure and partly disagree with it:
# Anthropic's admits the outage 20 s into it (15 s after we page) and is all clear 40 s after
# the calls succeed again (15 s after our page resolves); OpenAI's never mentions the TTFT climb
# we measure; every other page stays quiet throughout.
OFFICIAL = (
    Incident(
        ANTHROPIC, OFFICIAL_STATUS_RULE,
        "major “Elevated errors on Claude Haiku 4.5” 20 s into the outage, none 40 s after it",
        (Step(35, {"indicator": "major", "incident": "Elevated errors on Claude Haiku 4.5"},
              "major: “Elevated errors on Claude Haiku 4.5” (investigating)"),
         Step(55, {"incident_status": "monitoring"},
              "still major: “a fix has been implemented and we are monitoring the results”"),
         Step(90, {"indicator": "none", "incident": None}, "none: “All Systems Operational”")),
    ),
)  # fmt: skip


def _scaled(behavior: Mapping[str, Any], speed: float) -> dict[str, Any]:
    out = {}
    for key, value in behavior.items():
        if key in _DURATIONS:
            value = value / speed
        elif key in _RATES:
            value = value * speed
        out[key] = value
    return out


def build_scenario(speed: float) -> Scenario:
    """The simulator's scenario; run it with the simulator's ``speed`` set to the same N."""
    models: dict[str, Any] = {}
    for m in MODELS:
        behavior = _scaled(m.behavior, speed)
        timeline = [
            {"at": s.at, "set": _scaled(s.set, speed)}
            for incident in INCIDENTS
            if incident.model is m
            for s in incident.steps
        ]
        if timeline:
            behavior.update(timeline=timeline, loop=PERIOD_S)  # timeline times are scenario time
        models[m.model] = behavior
    pages: dict[str, Any] = {}
    for m in MODELS:
        page: dict[str, Any] = {"components": list(m.components)}
        steps = [
            {"at": s.at, "set": dict(s.set)} for o in OFFICIAL if o.model is m for s in o.steps
        ]
        if steps:
            page.update(timeline=steps, loop=PERIOD_S)
        pages[m.provider] = page
    return parse_scenario({"models": models, "status_pages": pages}, source="demo scenario")


def build_config(
    speed: float,
    sim_bases: Mapping[str, str],
    sink_url: str,
    listen: str,
    status_pages: Mapping[str, str],
) -> dict[str, Any]:
    """The monitor's config (the raw YAML shape) for the simulated targets at ``speed``;
    ``status_pages`` maps each provider to its simulated official status page."""

    def d(seconds: float) -> float:
        return seconds / speed

    def windows(window: float, clear: float | None = 15.0) -> dict[str, float]:
        return {"window": d(window)} | ({} if clear is None else {"clear_window": d(clear)})

    targets = []
    for m in MODELS:
        target: dict[str, Any] = {
            "provider": m.provider,
            "model": m.model,
            "base_url": sim_bases[m.api],
            "api_key": f"${{{KEY_VAR}}}",
            "interval": d(INTERVAL_S),
        }
        if m.tps_floor is not None:
            target["tps_floor"] = m.tps_floor * speed
        targets.append(target)
    return {
        "targets": targets,
        # Windows of a minute instead of 5 minutes so that each incident fires and resolves
        # within the script; a median (tps_low) or a mean (the spike) needs a shorter one.
        "rules": {
            "ttft_p95_high": {**windows(60), "threshold": d(3.0)},
            "error_rate_warning": {**windows(60), "for": d(10)},
            "error_rate_critical": windows(60),
            "consecutive_unavailable": windows(60, None),
            "rate_limit_headroom": windows(60, None),
            "auth_failure": windows(60, None),
            "tps_low": windows(30),
            "tokens_per_request_spike": windows(30),
        },
        "alerting": {
            "resolve_after": d(10),
            "group_wait": d(1),
            "repeat_interval": d(3600),
            # Shorter than the period: each repetition of the script is a new incident, not
            # a flapping one held open for flap_resolve_after.
            "flap_window": d(PERIOD_S - 30),
            "flap_resolve_after": d(600),
        },
        "monitor": {"retry_interval": d(1.5), "status_interval": d(STATUS_INTERVAL_S)},
        "providers": {m.provider: {"status_page": status_pages[m.provider]} for m in MODELS},
        "web": {"listen": listen, "title": "llmpulse demo"},
        "notifiers": [{"name": "demo-sink", "type": "webhook", "url": sink_url}],
    }
