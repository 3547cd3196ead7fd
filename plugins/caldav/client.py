"""The HTTP side of the CalDAV provider: one aiohttp session per account.

It sends WebDAV requests with the account's credentials (Basic or bearer), its TLS trust
(``ca_file``, ``verify_tls``) and timeout; follows redirects itself so that PROPFIND/REPORT keep
their method and body; reports every request to the hub's telemetry; and turns network failures
into :class:`hub.spec.TransientError` (or :class:`hub.spec.AuthError` for a TLS certificate the
account does not trust). Statuses are left to the caller, which maps them with
:mod:`plugins.caldav.errors`.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from hub.spec import (
    AuthError,
    CallStatus,
    PermanentError,
    Telemetry,
    TransientError,
    ca_bundle_context,
)

XML = "application/xml; charset=utf-8"
ICAL = "text/calendar; charset=utf-8"
_MAX_REDIRECTS = 5
_SAFE_PATH = "/@:+,;=!$&'()*~"


@dataclass(frozen=True, slots=True)
class Credentials:
    """How the account authenticates: a bearer ``token`` wins over ``username``/``password``."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    def header(self) -> str | None:
        if self.token:
            return f"Bearer {self.token}"
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished HTTP exchange: status, headers, body and the URL that answered."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str

    @property
    def etag(self) -> str | None:
        return self.headers.get("ETag")


def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext | bool:
    """The TLS trust of an account; raises ValueError when ``ca_file`` cannot be loaded."""
    if not verify:
        return False
    return ca_bundle_context(ca_file) if ca_file else True


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def quote_path(path: str) -> str:
    """A decoded path, percent-encoded for a request line or an href."""
    return quote(path, safe=_SAFE_PATH)


def path_url(base: str, path: str) -> str:
    """The absolute URL of a decoded ``path`` on ``base``'s host."""
    return urljoin(base, quote_path(path))


class DavClient:
    """WebDAV requests for one account, over one aiohttp session (opened lazily)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        account: str,
        telemetry: Telemetry,
        timeout: float = 30.0,
        tls: ssl.SSLContext | bool = True,
    ) -> None:
        """``tls``: a context from :func:`tls_context`, or True for the system's trust."""
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._credentials = credentials
        self._account = account
        self._telemetry = telemetry
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._tls = tls
        # Credentials go only to hosts the account URL or its discovery named (iCloud serves
        # each user's calendars from another host than the one the account points at).
        self._trusted = {origin(self.base_url)}
        self._session: aiohttp.ClientSession | None = None

    def trust(self, url: str) -> None:
        """Send credentials to ``url``'s origin too (a host the account's server pointed at)."""
        self._trusted.add(origin(url))

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._tls, limit=16)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        body: bytes | None = None,
        content_type: str | None = None,
        depth: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request (following redirects); raise only for network-level failures."""
        if self._session is None:
            await self.open()
        assert self._session is not None
        hdrs: CIMultiDict[str] = CIMultiDict(headers or {})
        if content_type:
            hdrs["Content-Type"] = content_type
        if depth is not None:
            hdrs["Depth"] = depth
        for _ in range(_MAX_REDIRECTS + 1):
            auth = self._credentials.header()
            if auth and origin(url) in self._trusted:
                hdrs["Authorization"] = auth
            else:
                hdrs.pop("Authorization", None)
            reply = await self._send(method, url, hdrs, body, operation)
            location = reply.headers.get("Location")
            if reply.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            return reply
        raise PermanentError(f"{operation} {url}: more than {_MAX_REDIRECTS} redirects")

    async def _send(
        self,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes | None,
        operation: str,
    ) -> Reply:
        assert self._session is not None
        started = time.monotonic()
        status = CallStatus.ERROR
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                data = await resp.read()
                status = CallStatus.for_http(resp.status)
                return Reply(resp.status, resp.headers, data, str(resp.url))
        except aiohttp.ClientConnectorCertificateError as exc:
            status = CallStatus.AUTH
            raise AuthError(
                f"{operation} {url}: the server's TLS certificate is not trusted "
                f"({exc.certificate_error}); set ca_file"
            ) from None
        except TimeoutError:
            status = CallStatus.TRANSIENT
            raise TransientError(f"{operation} {url}: timed out") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{operation} {url}: {type(exc).__name__}: {exc}") from None
        finally:
            self._telemetry.request(self._account, operation, status, time.monotonic() - started)
