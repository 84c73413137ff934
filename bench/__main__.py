"""``python -m bench [NAME] [ARGS]`` (or ``./dev bench``): run one benchmark, or all of them."""

from __future__ import annotations

import sys

from bench import (
    config_load,
    detection,
    gateway_vs_litellm,
    metrics_query,
    scale,
    startup,
    storage,
    ttft_accuracy,
    web_api,
)

BENCHES = {
    "ttft": ttft_accuracy.main,
    "metrics": metrics_query.main,
    "detection": detection.main,
    "scale": scale.main,
    "web": web_api.main,
    "gateway": gateway_vs_litellm.main,
    "storage": storage.main,
    "config": config_load.main,
    "startup": startup.main,
}


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] in BENCHES:
        return BENCHES[args[0]](args[1:])
    if args and not args[0].startswith("-"):
        print(f"unknown benchmark {args[0]!r}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    return max(bench(args) for bench in BENCHES.values())


if __name__ == "__main__":
    raise SystemExit(main())
