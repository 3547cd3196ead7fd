"""A small aiohttp reverse proxy in front of a real CalDAV server, for what it cannot do itself.

It counts requests at the server side (request budgets, the benchmark), requires a bearer
token and forwards with the server's Basic credentials (Radicale has no bearer auth), serves
TLS with a test CA, hides sync-collection (a server without RFC 6578) or the collection's
ctag, and injects faults (5xx, 429 with Retry-After).
"""

from __future__ import annotations

import re
import ssl
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {
    "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
    "host", "te", "trailer", "upgrade", "authorization",
}  # fmt: skip
_SYNC_TOKEN = re.compile(rb"<([\w]+:)?sync-token>[^<]*</([\w]+:)?sync-token>")
_CTAG = re.compile(rb"<([\w]+:)?getctag>[^<]*</([\w]+:)?getctag>")
_SYNC_REPORT = re.compile(
    rb"<([\w]+:)?supported-report><([\w]+:)?report><([\w]+:)?sync-collection\s*/>"
    rb"</([\w]+:)?report></([\w]+:)?supported-report>"
)


@dataclass
class Fault:
    """Answer the next matching request with ``status`` (and headers) instead of forwarding."""

    status: int
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "injected"


@dataclass
class DavProxy:
    """Knobs are plain attributes; change them between requests."""

    upstream: str
    upstream_auth: str | None = None  # Authorization header to send upstream
    bearer: str | None = None  # when set, clients must send "Bearer <bearer>"
    no_sync_collection: bool = False  # REPORT sync-collection -> 501, sync-token hidden
    no_ctag: bool = False  # CS:getctag hidden (left empty) in PROPFIND answers
    faults: list[Fault] = field(default_factory=list)
    requests: int = 0
    by_method: Counter[str] = field(default_factory=Counter)
    url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _fault(self, method: str) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.method is None or fault.method == method:
                return self.faults.pop(i)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.by_method[request.method] += 1
        wanted = f"Bearer {self.bearer}"
        if self.bearer is not None and request.headers.get("Authorization") != wanted:
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        body = await request.read()
        fault = self._fault(request.method)
        if fault is not None:
            return web.Response(status=fault.status, headers=fault.headers, text=fault.body)
        if self.no_sync_collection and request.method == "REPORT" and b"sync-collection" in body:
            return web.Response(status=501, text="sync-collection is not implemented here")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        if self.upstream_auth:
            headers["Authorization"] = self.upstream_auth
        elif "Authorization" in request.headers and self.bearer is None:
            headers["Authorization"] = request.headers["Authorization"]
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.upstream.rstrip("/") + request.rel_url.raw_path_qs,
            data=body,
            headers=headers,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            out_headers = {
                k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
            }
            if self.no_sync_collection and request.method == "PROPFIND":
                data = _SYNC_REPORT.sub(b"", _SYNC_TOKEN.sub(b"", data))
            if self.no_ctag and request.method == "PROPFIND":
                data = _CTAG.sub(b"", data)
            return web.Response(status=upstream.status, headers=out_headers, body=data)
