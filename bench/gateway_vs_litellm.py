"""The llmpulse gateway against LiteLLM's proxy: added latency, throughput and memory.

One run starts a fast fake OpenAI-compatible upstream (raw asyncio, its own process), LiteLLM's
proxy (``litellm --num_workers 1``, installed by this script into its own venv, cached under
``~/.cache/llmpulse-bench``) and ``llmpulse gateway``, both from the same LiteLLM-format config
pointed at that upstream. One load generator (aiohttp, this process) drives each target in turn,
non-streaming and streaming: N sequential requests at concurrency 1 (added latency = proxy p50 −
direct p50) and a timed run at concurrency 20 (throughput; a streamed request counts when its
``[DONE]`` has arrived). The upstream called directly is the reference row. Peak RSS is the
VmHWM of each proxy's process tree. Goals (issue 5): ≥ 10× LiteLLM's throughput in both modes,
≤ 1/10 of its added latency, ≤ 1/3 of its memory. Exits non-zero when a goal is missed or the
llmpulse gateway is not available yet.

Then the llmpulse gateway again with keys, limits and attribution on (``llmpulse+limits``): the
client's key is a ``gateway.keys`` entry of a team with rpm, tpm and a budget (set high enough
never to refuse), its team has a budget, and every request names a user, tags and a session.
Goals (issue 15): added latency p50 ≤ 1 ms (non-stream), throughput ≥ 85 % of the plain
gateway's in the same run, both modes. ``--redis URL`` shares the limits through that Redis.

Then the plain llmpulse gateway with ``--num_workers 2`` (``2 workers``): two worker processes
on the one port, the same config. Its figures stand beside the one-worker ones (no goal: the
one-worker run is the one compared with LiteLLM's single worker); on a 2-core machine the two
workers and the load generator share the cores, which caps what a second worker adds.
``--no-workers`` leaves it out.

``--no-litellm`` measures only the direct upstream and the llmpulse runs; ``--rounds N``
alternates the llmpulse runs N times and reports each figure's median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

from bench.common import report
from llmpulse import aio

CACHE = Path.home() / ".cache" / "llmpulse-bench"
LITELLM_SPEC = "litellm[proxy]==1.108.*"
MODEL = "bench-model"
KEY_VAR = "BENCH_UPSTREAM_KEY"
CHUNKS = 20
GOAL_THROUGHPUT = 10.0  # llmpulse / LiteLLM, both modes
GOAL_LATENCY = 0.1  # llmpulse added latency / LiteLLM's
GOAL_RSS = 1 / 3
GOAL_LIMITS_ADDED_MS = 1.0  # with keys, limits and attribution on (issue 15)
GOAL_LIMITS_KEPT = 0.85  # of the plain gateway's throughput, same run


# --- the fake upstream -------------------------------------------------------------------------


def _upstream_payloads() -> tuple[bytes, bytes]:
    """The whole non-streaming and streaming responses, built once: serving is a single write."""
    usage = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
    base = {"id": "chatcmpl-bench", "created": 1700000000, "model": "fake-model"}
    body = json.dumps(
        {
            **base,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "tok " * CHUNKS},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    ).encode()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    plain = head % len(body) + body
    chunk = {**base, "object": "chat.completion.chunk"}
    token = {"index": 0, "delta": {"role": "assistant", "content": "tok "}, "finish_reason": None}
    events = [{**chunk, "choices": [token]} for _ in range(CHUNKS)]
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**chunk, "choices": [], "usage": usage})
    sse = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    # Chunked transfer encoding, one HTTP chunk per SSE event, as real providers send them.
    framed = b"".join(b"%x\r\n%s\r\n" % (len(s), s) for s in sse) + b"0\r\n\r\n"
    stream = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n" + framed
    )
    return plain, stream


_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class _Upstream(asyncio.Protocol):
    """Just enough HTTP/1.1 (keep-alive, Content-Length bodies) to answer chat completions."""

    plain, stream = _upstream_payloads()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
            size = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4 : end + 4 + size]
            self.buffer = self.buffer[end + 4 + size :]
            self.transport.write(self.stream if _STREAM_TRUE.search(body) else self.plain)


def serve_upstream(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Upstream, "127.0.0.1", port, backlog=1024)
        print("ready", flush=True)
        await server.serve_forever()

    aio.run(main())


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> Iterator[int]:
    """Start ``cmd`` in its own session (so its whole tree can be ended); yield its pid."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    try:
        yield proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (psutil is not a dependency)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return pids


def peak_rss_mb(pid: int) -> float:
    """Sum of each process's peak resident set (VmHWM) over the tree."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def install_litellm(venv: Path, spec: str) -> str:
    """LiteLLM in its own venv (its dependency pins must not touch ours); cached across runs."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not (marker.exists() and marker.read_text() == spec):
        print(f"installing {spec} into {venv} (once; a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
            check=True,
        )
        marker.write_text(spec)
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def llmpulse_gateway_help() -> str | None:
    """``llmpulse gateway --help`` output, or None while the command does not exist yet."""
    out = subprocess.run(
        [sys.executable, "-m", "llmpulse", "gateway", "--help"], capture_output=True, text=True
    )
    return out.stdout if out.returncode == 0 else None


LIMITED_KEY_VAR = "BENCH_LIMITED_KEY"


def write_config(
    path: Path, upstream: str, key: str, *, limits: bool = False, redis: str | None = None
) -> None:
    """One LiteLLM proxy config, read unchanged by both proxies; with ``limits``, llmpulse's
    keys, limits and budgets added (only the llmpulse gateway reads it then)."""
    config: dict[str, object] = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": f"{upstream}/v1",
                    "api_key": f"os.environ/{KEY_VAR}",
                },
            }
        ],
        # LiteLLM at its leanest: no callbacks, no spend or error logs (there is no DB either).
        "litellm_settings": {"set_verbose": False, "callbacks": [], "success_callback": []},
        # LiteLLM refuses to start without a master key; llmpulse reads it as its gateway key.
        "general_settings": {
            "master_key": key,
            "disable_spend_logs": True,
            "disable_error_logs": True,
        },
    }
    if limits:
        budget = {"max_usd": 1e9, "period": "30d"}
        limited = {"name": "bench", "key": f"os.environ/{LIMITED_KEY_VAR}", "team": "bench",
                   "rpm": 10**9, "tpm": 10**12, "budget": budget}  # fmt: skip
        config["gateway"] = {"keys": [limited], **({"redis_url": redis} if redis else {})}
        config["teams"] = [{"name": "bench", "budget": {"max_usd": 1e9, "period": "1mo"}}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))


# --- the load generator ------------------------------------------------------------------------


def request_body(stream: bool) -> bytes:
    messages = [{"role": "user", "content": "Say hello."}]
    return json.dumps(
        {"model": MODEL, "messages": messages, "max_tokens": 32, "stream": stream}
    ).encode()


@dataclass
class Load:
    url: str
    session: aiohttp.ClientSession
    errors: list[str] = field(default_factory=list)

    async def one(self, body: bytes, stream: bool) -> bool:
        """One whole request: the full JSON, or every chunk up to ``[DONE]``."""
        try:
            async with self.session.post(self.url, data=body) as resp:
                data = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return False
        ok = resp.status == 200 and (b"data: [DONE]" in data if stream else b'"choices"' in data)
        if not ok:
            self.errors.append(f"HTTP {resp.status}: {data[:200]!r}")
        return ok

    async def sequential(self, stream: bool, count: int) -> list[float]:
        """Latencies in ms of ``count`` requests one after another."""
        body, times = request_body(stream), []
        for _ in range(count):
            t = time.perf_counter()
            if await self.one(body, stream):
                times.append((time.perf_counter() - t) * 1000)
        return times

    async def timed(self, stream: bool, concurrency: int, duration: float) -> float:
        """Completed requests per second with ``concurrency`` in flight for ``duration`` s."""
        body, done = request_body(stream), 0
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                ok = await self.one(body, stream)  # not `done += await`: that loses updates
                done += ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - start)


@dataclass(frozen=True)
class GatewayRun:
    """One llmpulse gateway measured: ``name`` in the figures, its ``config`` and client
    ``key``, whether requests name a user, tags and a session (``attribution``), the gateway's
    extra ``flags``."""

    name: str
    config: Path
    key: str
    title: str
    attribution: bool = False
    flags: tuple[str, ...] = ()


def gateway_runs(
    config: Path, key: str, limited_config: Path, limited_key: str, workers: bool
) -> list[GatewayRun]:
    """The plain gateway, with keys, limits and attribution on, and (``workers``) the plain
    one again with two workers: the same requests as the plain run, so only the workers
    differ."""
    runs = [
        GatewayRun("llmpulse", config, key, "llmpulse gateway"),
        GatewayRun("limits", limited_config, limited_key,
                   "llmpulse gateway, keys, limits and attribution on", attribution=True),
    ]  # fmt: skip
    if workers:
        runs.append(
            GatewayRun("workers", config, key, "llmpulse gateway --num_workers 2",
                       flags=("--num_workers", "2"))
        )  # fmt: skip
    return runs


def announced(log: Path, line: str, timeout: float) -> None:
    """Wait until ``log`` holds ``line``."""
    deadline = time.monotonic() + timeout
    while line not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise RuntimeError(f"no {line!r} in {log} within {timeout:.0f}s")
        time.sleep(0.1)


def headers(key: str, attribution: bool = False) -> dict[str, str]:
    out = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    if attribution:
        out |= {"x-llmpulse-user": "user-42", "x-llmpulse-tags": "feature=bench,env=prod",
                "x-llmpulse-session": "session-1"}  # fmt: skip
    return out


async def ready(url: str, key: str, timeout: float, log: Path | None = None) -> None:
    """Wait until a real chat completion succeeds: readiness means the same for every proxy."""
    deadline = time.monotonic() + timeout
    timeout_ = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout_, headers=headers(key)) as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.post(url, data=request_body(False)) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                if log is not None:
                    print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise RuntimeError(f"{url} did not become ready in {timeout:.0f}s")
            await asyncio.sleep(0.25)


async def measure(
    url: str, key: str, args: argparse.Namespace, attribution: bool = False
) -> dict[str, float]:
    figures: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers(key, attribution)
    ) as session:
        load = Load(url, session)
        for stream in (False, True):
            mode = "stream" if stream else "nonstream"
            await load.sequential(stream, args.warmup_requests)
            times = await load.sequential(stream, args.requests)
            await load.timed(stream, args.concurrency, args.warmup)
            rate = await load.timed(stream, args.concurrency, args.duration)
            figures[f"{mode}_c1_p50_ms"] = statistics.median(times)
            figures[f"{mode}_c1_p99_ms"] = statistics.quantiles(times, n=100)[98]
            figures[f"{mode}_c{args.concurrency}_rps"] = rate
            print(
                f"  {mode:<10} c=1 p50 {figures[f'{mode}_c1_p50_ms']:7.2f} ms  "
                f"p99 {figures[f'{mode}_c1_p99_ms']:7.2f} ms   c={args.concurrency} "
                f"{rate:8.1f} req/s",
                flush=True,
            )
        figures["errors"] = float(len(load.errors))
        for error in sorted(set(load.errors))[:5]:
            print(f"  error: {error}")
    return figures


# --- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gateway", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="per mode at concurrency 1")
    parser.add_argument("--warmup-requests", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before a timed run")
    parser.add_argument("--litellm-spec", default=LITELLM_SPEC, help="pip requirement")
    parser.add_argument("--litellm-venv", type=Path, default=CACHE / "litellm-venv")
    parser.add_argument("--save-baseline", action="store_true")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument("--redis", help="share the limits run's limits through this Redis URL")
    parser.add_argument("--no-workers", action="store_true", help="skip the --num_workers 2 run")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternated runs of each llmpulse gateway (medians)"
    )
    args = parser.parse_args(argv)

    version = "" if args.no_litellm else install_litellm(args.litellm_venv, args.litellm_spec)
    gateway_help = llmpulse_gateway_help()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env[KEY_VAR] = "sk-fake-upstream"
        up_port = free_port()
        upstream = f"http://127.0.0.1:{up_port}"
        config = work / "config.yaml"
        key = f"sk-{secrets.token_hex(32)}"
        write_config(config, upstream, key)
        limited_config = work / "limits.yaml"
        write_config(limited_config, upstream, key, limits=True, redis=args.redis)
        env[LIMITED_KEY_VAR] = limited_key = f"sk-{secrets.token_hex(32)}"
        upstream_cmd = [
            sys.executable,
            "-m",
            "bench.gateway_vs_litellm",
            "--upstream",
            str(up_port),
        ]
        with process(upstream_cmd, work / "upstream.log", env, Path.cwd()):
            aio.run(ready(f"{upstream}/v1/chat/completions", key, 30))
            print(f"direct (fake upstream, {CHUNKS}-chunk streams)", flush=True)
            results["direct"] = aio.run(measure(f"{upstream}/v1/chat/completions", key, args))

            if not args.no_litellm:
                port = free_port()
                litellm_env = {
                    **env,
                    "LITELLM_LOG": "ERROR",
                    # The bundled price map, not a download at start-up.
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                }
                litellm = str(args.litellm_venv / "bin" / "litellm")
                cmd = [litellm, "--config", str(config), "--host", "127.0.0.1",
                       "--port", str(port), "--num_workers", "1"]  # fmt: skip
                with process(cmd, work / "litellm.log", litellm_env, work) as pid:
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    aio.run(ready(url, key, 180, work / "litellm.log"))
                    print(f"litellm {version} (1 worker)", flush=True)
                    results["litellm"] = aio.run(measure(url, key, args))
                    results["litellm"]["peak_rss_mb"] = peak_rss_mb(pid)

            runs = gateway_runs(config, key, limited_config, limited_key, not args.no_workers)
            rounds: dict[str, list[dict[str, float]]] = {run.name: [] for run in runs}
            # Alternated, each figure the median of its rounds: a shared machine's drift
            # shows in both alike.
            for round_ in range(args.rounds if gateway_help is not None else 0):
                for run in runs:
                    port = free_port()
                    cmd = [sys.executable, "-m", "llmpulse", "gateway", "--config",
                           str(run.config), "--listen", f"127.0.0.1:{port}",
                           *run.flags]  # fmt: skip
                    if "--db" in gateway_help:
                        cmd += ["--db", str(work / f"{run.name}-{round_}.db")]
                    log = work / f"{run.name}.log"
                    with process(cmd, log, env, work) as pid:
                        url = f"http://127.0.0.1:{port}/v1/chat/completions"
                        aio.run(ready(url, run.key, 60, log))
                        # Every worker serves once the gateway says it serves: none is still
                        # starting as the load begins.
                        announced(log, "llmpulse gateway: serving", 60)
                        print(run.title, flush=True)
                        figures = aio.run(measure(url, run.key, args, run.attribution))
                        figures["peak_rss_mb"] = peak_rss_mb(pid)
                        rounds[run.name].append(figures)
            for name, runs_of in rounds.items():
                if runs_of:
                    results[name] = {k: statistics.median(r[k] for r in runs_of)
                                     for k in runs_of[0]}  # fmt: skip
    return summarise(results, args, version)


def summarise(results: dict[str, dict[str, float]], args: argparse.Namespace, version: str) -> int:
    c = args.concurrency
    direct = results["direct"]
    for name in ("litellm", "llmpulse", "limits", "workers"):
        if name in results:
            for mode in ("nonstream", "stream"):
                added = results[name][f"{mode}_c1_p50_ms"] - direct[f"{mode}_c1_p50_ms"]
                results[name][f"{mode}_added_p50_ms"] = added
    rows = [
        ("added latency p50, c=1, non-stream (ms)", "nonstream_added_p50_ms", True),
        ("added latency p50, c=1, stream (ms)", "stream_added_p50_ms", True),
        ("latency p50, c=1, non-stream (ms)", "nonstream_c1_p50_ms", True),
        ("latency p50, c=1, stream (ms)", "stream_c1_p50_ms", True),
        (f"throughput c={c}, non-stream (req/s)", f"nonstream_c{c}_rps", False),
        (f"throughput c={c}, stream (req/s)", f"stream_c{c}_rps", False),
        ("peak RSS (MB)", "peak_rss_mb", True),
        ("failed requests", "errors", True),
    ]
    names = [n for n in ("direct", "litellm", "llmpulse", "limits", "workers") if n in results]
    shown = {"limits": "+limits", "workers": "2 workers"}
    against_litellm = "llmpulse" in results and "litellm" in results
    ratio_title = f"{'llmpulse/litellm':>18}" if against_litellm else ""
    print(f"\n{'':<42}" + "".join(f"{shown.get(n, n):>12}" for n in names) + ratio_title)
    for label, key, _ in rows:
        cells = [results[n].get(key) for n in names]
        line = f"{label:<42}" + "".join(f"{v:>12.2f}" if v is not None else f"{'—':>12}"
                                        for v in cells)  # fmt: skip
        if against_litellm and key != "errors" and results["litellm"].get(key):
            line += f"{results['llmpulse'][key] / results['litellm'][key]:>17.3f}x"
        print(line)

    figures = {f"{n}_{key}": results[n][key] for n in names for _, key, _ in rows
               if key in results[n]}  # fmt: skip
    lower = {f"{n}_{key}" for n in names for _, key, low in rows if low}
    failed = sum(results[n]["errors"] for n in names)
    if "llmpulse" not in results:
        report("gateway", figures, lower, save=False)
        print(
            f"\nLiteLLM {version} measured above; the llmpulse side is not available yet "
            "(`llmpulse gateway --help` failed), so there are no ratios and no goals to check."
        )
        return 1
    pulse = results["llmpulse"]
    goals: list[tuple[str, float, bool]] = []
    if "litellm" in results:
        lite = results["litellm"]
        ratios = {
            "ratio_throughput_nonstream": pulse[f"nonstream_c{c}_rps"]
            / lite[f"nonstream_c{c}_rps"],
            "ratio_throughput_stream": pulse[f"stream_c{c}_rps"] / lite[f"stream_c{c}_rps"],
            "ratio_added_latency_nonstream": pulse["nonstream_added_p50_ms"]
            / lite["nonstream_added_p50_ms"],
            "ratio_added_latency_stream": pulse["stream_added_p50_ms"]
            / lite["stream_added_p50_ms"],
            "ratio_peak_rss": pulse["peak_rss_mb"] / lite["peak_rss_mb"],
        }
        figures.update(ratios)
        lower |= {k for k in ratios if "throughput" not in k}
        goals += [
            ("throughput ≥ 10× LiteLLM's, non-stream", ratios["ratio_throughput_nonstream"],
             ratios["ratio_throughput_nonstream"] >= GOAL_THROUGHPUT),
            ("throughput ≥ 10× LiteLLM's, stream", ratios["ratio_throughput_stream"],
             ratios["ratio_throughput_stream"] >= GOAL_THROUGHPUT),
            ("added latency ≤ 1/10 of LiteLLM's, non-stream",
             ratios["ratio_added_latency_nonstream"],
             ratios["ratio_added_latency_nonstream"] <= GOAL_LATENCY),
            ("added latency ≤ 1/10 of LiteLLM's, stream", ratios["ratio_added_latency_stream"],
             ratios["ratio_added_latency_stream"] <= GOAL_LATENCY),
            ("peak RSS ≤ 1/3 of LiteLLM's", ratios["ratio_peak_rss"],
             ratios["ratio_peak_rss"] <= GOAL_RSS),
        ]  # fmt: skip
    if "limits" in results:
        limited = results["limits"]
        kept = {mode: limited[f"{mode}_c{c}_rps"] / pulse[f"{mode}_c{c}_rps"]
                for mode in ("nonstream", "stream")}  # fmt: skip
        figures |= {f"limits_throughput_kept_{mode}": v for mode, v in kept.items()}
        added = limited["nonstream_added_p50_ms"]
        goals += [
            ("limits on: added latency p50 ≤ 1 ms, non-stream", added,
             added <= GOAL_LIMITS_ADDED_MS),
            ("limits on: throughput ≥ 85 % of without, non-stream", kept["nonstream"],
             kept["nonstream"] >= GOAL_LIMITS_KEPT),
            ("limits on: throughput ≥ 85 % of without, stream", kept["stream"],
             kept["stream"] >= GOAL_LIMITS_KEPT),
        ]  # fmt: skip
    if "workers" in results:
        two = results["workers"]
        scaled = {mode: two[f"{mode}_c{c}_rps"] / pulse[f"{mode}_c{c}_rps"]
                  for mode in ("nonstream", "stream")}  # fmt: skip
        figures |= {f"workers_throughput_vs_one_{mode}": v for mode, v in scaled.items()}
        print(
            f"\n2 workers vs 1: throughput {scaled['nonstream']:.2f}x non-stream, "
            f"{scaled['stream']:.2f}x stream; added latency p50 "
            f"{two['nonstream_added_p50_ms']:.2f} vs {pulse['nonstream_added_p50_ms']:.2f} ms "
            f"non-stream, {two['stream_added_p50_ms']:.2f} vs "
            f"{pulse['stream_added_p50_ms']:.2f} ms stream ({os.cpu_count()} cores shared with "
            "the load generator and the upstream)"
        )
    report("gateway", figures, lower, save=args.save_baseline)
    print(f"\ngoals{f' against LiteLLM {version} (1 worker)' if 'litellm' in results else ''}:")
    for label, value, met in goals:
        print(f"  {label:<52} {'met' if met else 'MISSED'} ({value:.3f})")
    if failed:
        print(f"{failed:.0f} requests failed: the figures above are not trustworthy")
    return 0 if all(met for _, _, met in goals) and not failed else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--upstream":
        serve_upstream(int(sys.argv[2]))
    else:
        raise SystemExit(main())
