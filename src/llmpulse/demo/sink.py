"""The demo's alert sink: a local webhook receiver that prints every notification it gets.

It is configured as an ordinary ``webhook`` notifier, so the pages it prints went through the
real alert engine, outbox and delivery. ``GET /`` lists the last notifications as JSON.
"""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime
from typing import Any

from aiohttp import web
from rich.console import Console
from rich.markup import escape

from llmpulse.rules import OFFICIAL_STATUS_RULE

KEEP = 200
_STYLES = {
    ("firing", "critical"): "bold red",
    ("firing", "warning"): "yellow",
}


class AlertSink:
    def __init__(self, console: Console, keep: int = KEEP) -> None:
        self.console = console
        self.received: deque[dict[str, Any]] = deque(maxlen=keep)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); returns the webhook URL."""
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        app.router.add_get("/", self._list)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}"
        return f"{self.url}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="expected a JSON object")
        if not isinstance(data, dict):
            return web.Response(status=400, text="expected a JSON object")
        self.received.append(data)
        self.console.print(line(data), highlight=False)
        return web.Response(text="ok")

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"notifications": list(self.received)})


def line(data: dict[str, Any]) -> str:
    """One rich-markup line: time, FIRING/RESOLVED, severity, target, summary, rule, and what
    the provider's status page said when the page went out."""
    status = str(data.get("status", "?"))
    severity = str(data.get("severity", "?"))
    style = _STYLES.get((status, severity), "green")
    rule = str(data.get("rule", ""))
    official = data.get("official_status")
    # An official_status page's summary already quotes the status page.
    said = f" · status page: {official}" if official and rule != OFFICIAL_STATUS_RULE else ""
    return (
        f"{datetime.now():%H:%M:%S}  [{style}]{status.upper():<8}  {severity:<8}[/{style}]  "
        f"{escape(str(data.get('target', '?'))):<30}  {escape(str(data.get('summary', '')))}"
        f"  [dim]{escape(rule + said)}[/dim]"
    )
