"""Loading a large config: ``load_config`` of a 10 MB file of 80,000 targets, and an alias bomb.

The file is generated (80,000 targets of an OpenAI-compatible server, five keys each: about
10.8 MB), then timed end to end through ``load_config`` (read, YAML with libyaml, the limits,
validation and resolution; median of 3), beside the same load with PyYAML's pure-Python loader
under the same limits, and the load as it was before (``yaml.safe_load`` of the text, then
``parse_config``: the pure-Python loader with the garbage collector running). Also the time to
refuse a 700-byte alias bomb. Goal (issue 11): the whole load under 5 s.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.common import report
from llmpulse.config import ConfigError, load_config, parse_config
from llmpulse.yamlfile import PURE_LOADER, gc_paused, read_yaml

TARGETS = 80_000
GOAL_S = 5.0
ENV: dict[str, str] = {}


def generate(path: Path) -> None:
    lines = ["targets:"]
    for i in range(TARGETS):
        lines += [
            f"  - name: target-{i:06d}",
            "    provider: openai-compatible",
            f"    model: model-{i % 97}",
            f"    base_url: http://10.0.{i // 256 % 256}.{i % 256}:8000/v1",
            "    interval: 30s",
        ]
    path.write_text("\n".join(lines) + "\n")


def bomb(path: Path) -> None:
    lines = ["model_list:", "  - model_name: chat", "    litellm_params:", "      model: openai/x"]
    lines.append("      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]")
    for i in range(1, 10):
        lines.append(f"      l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    path.write_text("\n".join(lines) + "\n")


def timed(load: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of one call (the machine may be shared: CPU time is steadier)."""
    wall, cpu = time.perf_counter(), time.process_time()
    config = load()
    assert len(config.targets) == TARGETS
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench config", description=__doc__)
    parser.add_argument("--save-baseline", action="store_true")
    parser.add_argument(
        "--no-pure", action="store_true", help="Skip the two pure-Python loads (~1 min)."
    )
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llmpulse.yaml"
        generate(path)
        size_mb = path.stat().st_size / 1e6
        print(f"config: {TARGETS:,} targets, {size_mb:.1f} MB")

        runs = [timed(lambda: load_config(path, ENV)) for _ in range(3)]
        figures["load_s"] = statistics.median(wall for wall, _ in runs)
        figures["load_cpu_s"] = statistics.median(cpu for _, cpu in runs)
        # Before anything slower ran: the new load's own peak.
        figures["load_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"load_config (libyaml): {figures['load_s']:.2f}s ({figures['load_cpu_s']:.2f}s CPU)")

        if not args.no_pure:

            def pure() -> Any:
                with gc_paused():  # as load_config does
                    return parse_config(read_yaml(path, PURE_LOADER), ENV, source=path)

            def before() -> Any:
                return parse_config(yaml.safe_load(path.read_text()), ENV, source=path)

            figures["pure_python_s"], _ = timed(pure)
            print(f"load_config with PyYAML's pure-Python loader: {figures['pure_python_s']:.2f}s")
            figures["before_s"], _ = timed(before)
            print(f"before (yaml.safe_load + parse_config): {figures['before_s']:.2f}s")
            figures["speedup_x"] = figures["before_s"] / figures["load_s"]
            print(f"speed-up over before: {figures['speedup_x']:.1f}x")

        bomb_path = Path(tmp) / "bomb.yaml"
        bomb(bomb_path)
        start = time.perf_counter()
        try:
            load_config(bomb_path, ENV)
        except ConfigError as exc:
            figures["bomb_refused_ms"] = (time.perf_counter() - start) * 1000
            print(f"alias bomb ({bomb_path.stat().st_size} bytes) refused in "
                  f"{figures['bomb_refused_ms']:.1f}ms: {exc}")  # fmt: skip
        else:
            raise AssertionError("the alias bomb loaded")

    report(
        "config",
        figures,
        lower_is_better={k for k in figures if k != "speedup_x"},
        save=args.save_baseline,
    )
    met = figures["load_s"] < GOAL_S
    print(f"goal (load_config of {size_mb:.0f} MB < {GOAL_S:g}s): {'met' if met else 'MISSED'}")
    return 0 if met else 1
