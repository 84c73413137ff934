"""Start-up of ``llmpulse check --help``: this tree beside a baseline commit, run side by side.

Each run is a fresh interpreter importing the command line and printing ``check``'s help, as a
user's shell does; runs of the two trees alternate so the machine's noise hits both alike. Also
counted: the modules of the gateway, SQLAlchemy, Alembic, psycopg and the servers that the run
loaded (issue 12: none, and at least 30 % faster than before the floor plan).

    ./dev bench startup [--runs N] [--baseline REF]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The last commit before the floor plan of issue 12.
BASELINE_REF = "53ff31f"
HEAVY = ("llmpulse.gateway", "sqlalchemy", "alembic", "psycopg", "uvicorn", "starlette", "redis")
GOAL = 0.7  # at least 30 % faster

_PROBE = """
import sys
sys.path.insert(0, {src!r})
sys.argv = ["llmpulse", "check", "--help"]
from llmpulse.cli import main
try:
    main()
except SystemExit:
    pass
heavy = [m for m in sys.modules if m.split(".")[0] in {heavy!r} or m.startswith({heavy!r})]
print("\\n" + __import__("json").dumps(len(heavy)), file=sys.stderr)
"""


def one_run(src: Path) -> tuple[float, int]:
    code = _PROBE.format(src=str(src), heavy=HEAVY)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=src
    )
    elapsed = time.perf_counter() - started
    return elapsed, int(json.loads(done.stderr.strip().splitlines()[-1]))


def baseline_tree(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench startup")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", default=BASELINE_REF, help="git ref to compare with")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": baseline_tree(args.baseline, Path(tmp)), "now": ROOT / "src"}
        times: dict[str, list[float]] = {name: [] for name in trees}
        heavy: dict[str, int] = {}
        for src in trees.values():
            one_run(src)  # warm the file cache and the bytecode of both trees first
        for _ in range(args.runs):
            for name, src in trees.items():
                elapsed, loaded = one_run(src)
                times[name].append(elapsed)
                heavy[name] = loaded
    before, now = (statistics.median(times[n]) for n in ("before", "now"))
    print(f"llmpulse check --help, median of {args.runs} fresh interpreters:")
    print(f"  {args.baseline:<10} {before * 1000:7.0f} ms, {heavy['before']} heavy modules loaded")
    print(f"  {'this tree':<10} {now * 1000:7.0f} ms, {heavy['now']} heavy modules loaded")
    print(f"  ratio {now / before:.2f} (goal <= {GOAL})")
    return 0 if now / before <= GOAL and heavy["now"] == 0 else 1
