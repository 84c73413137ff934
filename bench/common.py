"""Shared benchmark plumbing: a simulator in its own process, and baseline comparison."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

BASELINES = Path(__file__).parent / "baselines"


@contextlib.contextmanager
def sim_process(scenario: dict[str, Any]) -> Iterator[str]:
    """Run ``llmpulse sim`` in a separate process (as a real provider would be); yield its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(scenario, f)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse", "sim", "--scenario", f.name, "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/_sim/state", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        Path(f.name).unlink(missing_ok=True)


def report(name: str, figures: dict[str, float], lower_is_better: set[str], save: bool) -> None:
    """Print figures beside the saved baseline with current/baseline ratios."""
    path = BASELINES / f"{name}.json"
    baseline = json.loads(path.read_text())["figures"] if path.exists() else {}
    where = path if baseline else "none saved yet"
    print(f"\n{name}: current run vs baseline ({where})")
    print(f"{'figure':<38}{'baseline':>12}{'current':>12}{'ratio':>9}")
    for key, value in figures.items():
        base = baseline.get(key)
        ratio = f"{value / base:.2f}x" if base else "—"
        better = "lower" if key in lower_is_better else "higher"
        base_text = f"{base:.3f}" if base is not None else "—"
        print(f"{key:<38}{base_text:>12}{value:>12.3f}{ratio:>9}  ({better} is better)")
    if save:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"figures": figures, "saved": time.strftime("%F %T")}, indent=2))
        print(f"saved as the new baseline: {path}")
