"""The Graph HTTP client: msgraph-sdk's request adapter and middleware, configured for calhub.

Requests go through ``GraphRequestAdapter`` (auth provider, middleware pipeline) with kiota's
native response handler, so calhub reads status, headers and JSON itself and maps failures in
one place (:mod:`plugins.graph365.errors`) instead of catching the SDK's exception types.

What is decided here, once, for every request:

* **Token scoping.** msgraph-core's auth provider only sends a token to its allowed hosts
  (the national clouds by default, so a ``base_url`` override would go out with no token at
  all) and kiota treats an *empty* list as "any host". We pass exactly the base_url's host.
  kiota compares host names only, so :meth:`GraphHttp.check_link` also refuses any link
  (nextLink, deltaLink, stored cursor) whose scheme, host or port differ from ``base_url``.
* **One retry layer.** The SDK's RetryHandler would sleep and retry 429/503/504 up to three
  times inside one call, and the engine would then retry the whole operation again: blind
  retries multiplied. It is disabled (``should_retry=False``); a throttled response becomes
  :class:`hub.spec.TransientError` with ``retry_after``, and the engine's capped back-off,
  which sees every agent and the pass's budget, decides when to come back.
* **Headers.** ``Prefer: IdType="ImmutableId", outlook.timezone="UTC"`` on every request
  (and on every ``$batch`` item, see :mod:`plugins.graph365.batch`).
* **Per-mailbox limit.** Graph allows 4 concurrent requests per mailbox; :class:`MailboxSlots`
  holds that many per mailbox, and a ``$batch`` takes one slot per parallel lane it runs.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption
from msgraph import GraphRequestAdapter
from msgraph_core import GraphClientFactory
from msgraph_core.authentication import AzureIdentityAuthenticationProvider

from hub.spec import CallStatus, PermanentError, Telemetry, ca_bundle_context
from plugins.graph365.errors import error_for_exception
from plugins.graph365.wire import PREFER, Response


def tls_context(ca_file: str | None) -> ssl.SSLContext | bool:
    """What httpx verifies against: the given CA bundle, or the system's (reads a file: call
    it off the event loop)."""
    if not ca_file:
        return True
    try:
        return ca_bundle_context(ca_file)
    except ValueError as exc:
        raise PermanentError(f"graph365: ca_file {ca_file!r} cannot be used ({exc})") from exc


class MailboxSlots:
    """At most ``per_mailbox`` requests in flight per mailbox, from this provider."""

    def __init__(self, per_mailbox: int) -> None:
        self.per_mailbox = per_mailbox
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, mailbox: str, weight: int = 1) -> AsyncIterator[None]:
        key = mailbox.lower()
        sem = self._sems.setdefault(key, asyncio.Semaphore(self.per_mailbox))
        lock = self._locks.setdefault(key, asyncio.Lock())
        weight = max(1, min(weight, self.per_mailbox))
        taken = 0
        try:
            # Taking a multi-slot hold under a lock keeps two batches from each grabbing
            # part of the slots and waiting on each other forever.
            async with lock:
                while taken < weight:
                    await sem.acquire()
                    taken += 1
            yield
        finally:
            for _ in range(taken):
                sem.release()


class GraphHttp:
    """Sends Graph requests through msgraph-sdk's adapter and returns raw :class:`Response`."""

    def __init__(
        self,
        *,
        base_url: str,
        credential: AsyncTokenCredential,
        scope: str,
        account: str,
        telemetry: Telemetry,
        verify: ssl.SSLContext | bool = True,
        per_mailbox: int = 4,
        timeout_s: float = 60.0,
    ) -> None:
        split = urlsplit(base_url.rstrip("/"))
        if split.scheme != "https" and split.hostname not in ("127.0.0.1", "localhost"):
            raise PermanentError(f"graph365: base_url must be https: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.origin = (split.scheme, (split.hostname or "").lower(), split.port)
        self._base_path = split.path
        self.credential = credential
        self.scope = scope
        self.account = account
        self.telemetry = telemetry
        self.slots = MailboxSlots(per_mailbox)
        # msgraph-core wraps the client's transport in an AsyncGraphTransport that has no
        # aclose(), so closing the client leaves the pool's sockets open: calhub owns the
        # inner transport and closes it itself.
        self._transport = httpx.AsyncHTTPTransport(verify=verify)
        self._http = httpx.AsyncClient(transport=self._transport, timeout=httpx.Timeout(timeout_s))
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[scope], allowed_hosts=[split.hostname or ""]
        )
        client = GraphClientFactory.create_with_default_middleware(
            client=self._http,
            options={RetryHandlerOption.get_key(): RetryHandlerOption(should_retry=False)},
        )
        self.adapter = GraphRequestAdapter(auth, client=client)
        self.adapter.base_url = self.base_url

    async def close(self) -> None:
        await self._http.aclose()
        await self._transport.aclose()
        await self.credential.close()

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """An absolute URL under base_url; ``query`` percent-encoded (OData literals too)."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        if query:
            url += "?" + urlencode(dict(query), quote_via=quote, safe="$")
        return url

    def check_link(self, url: str) -> bool:
        """Whether ``url`` is on base_url's origin (scheme, host and port)."""
        split = urlsplit(url)
        origin = (split.scheme, (split.hostname or "").lower(), split.port)
        return origin == self.origin and split.path.startswith(self._base_path)

    async def token(self) -> str:
        """Acquire (or reuse) the app token, raising the hub's AuthError when refused."""
        try:
            return (await self.credential.get_token(self.scope)).token
        except Exception as exc:
            raise error_for_exception(exc, what="token") from exc

    async def send(
        self,
        method: str,
        url: str,
        *,
        mailbox: str,
        operation: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        weight: int = 1,
    ) -> Response:
        """One request; raises only for transport/auth failures (HTTP errors are returned)."""
        if not self.check_link(url):
            raise PermanentError(f"graph365: refusing to send a request to {url!r}")
        info = RequestInformation()
        info.http_method = Method(method)
        info.url = url
        info.headers.add("Prefer", PREFER)
        info.headers.add("Accept", "application/json")
        for key, value in (headers or {}).items():
            info.headers.add(key, value)
        if body is not None:
            info.set_stream_content(json.dumps(body).encode(), "application/json")
        info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
        began = time.perf_counter()
        status = CallStatus.ERROR
        async with self.slots.hold(mailbox, weight):
            try:
                raw: httpx.Response = await self.adapter.send_primitive_async(info, "bytes", {})
                status = CallStatus.for_http(raw.status_code)
            except Exception as exc:
                raise error_for_exception(exc, what=f"{operation} {mailbox}") from exc
            finally:
                self.telemetry.request(self.account, operation, status, time.perf_counter() - began)
        content = raw.content
        try:
            decoded = json.loads(content) if content else None
        except ValueError:
            decoded = {
                "error": {"code": "NotJson", "message": content[:200].decode(errors="replace")}
            }
        return Response(raw.status_code, dict(raw.headers), decoded)
