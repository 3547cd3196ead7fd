"""WebDAV/CalDAV XML: the request bodies this plugin sends and the multistatus it reads.

Only what the provider needs (RFC 4918 PROPFIND, RFC 4791 calendar-query/multiget, RFC 6578
sync-collection, RFC 5397 current-user-principal). Parsing is namespace-exact and tolerant of
the usual server differences (prefixes, absolute or relative hrefs, status per response or per
propstat).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote, urlsplit

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"

_PREFIXES = {DAV: "d", CALDAV: "c", CS: "cs"}


def tag(ns: str, name: str) -> str:
    """Clark notation, as ElementTree names elements: ``{DAV:}href``."""
    return f"{{{ns}}}{name}"


# --------------------------------------------------------------------------- building


def _xml(root: str, inner: str) -> bytes:
    ns = " ".join(f'xmlns:{p}="{uri}"' for uri, p in _PREFIXES.items())
    return f'<?xml version="1.0" encoding="utf-8"?>\n<{root} {ns}>{inner}</{root}>'.encode()


def _props(props: Iterable[tuple[str, str]]) -> str:
    return "<d:prop>" + "".join(f"<{_PREFIXES[ns]}:{name}/>" for ns, name in props) + "</d:prop>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def propfind(props: Iterable[tuple[str, str]]) -> bytes:
    """A PROPFIND body asking for ``props`` (pairs of namespace and local name)."""
    return _xml("d:propfind", _props(props))


def _ical_time(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


def calendar_query(start: datetime, end: datetime, *, data: bool = True) -> bytes:
    """A calendar-query for VEVENTs overlapping [start, end) (UTC), with etags and data."""
    props = [(DAV, "getetag")] + ([(CALDAV, "calendar-data")] if data else [])
    flt = (
        '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
        f'<c:time-range start="{_ical_time(start)}" end="{_ical_time(end)}"/>'
        "</c:comp-filter></c:comp-filter></c:filter>"
    )
    return _xml("c:calendar-query", _props(props) + flt)


def calendar_multiget(hrefs: Iterable[str]) -> bytes:
    """A calendar-multiget for the given (percent-encoded) hrefs, with etags and data."""
    inner = "".join(f"<d:href>{_escape(h)}</d:href>" for h in hrefs)
    props = _props([(DAV, "getetag"), (CALDAV, "calendar-data")])
    return _xml("c:calendar-multiget", props + inner)


def sync_collection(token: str) -> bytes:
    """An RFC 6578 sync-collection REPORT from ``token`` ("" for the initial listing)."""
    inner = f"<d:sync-token>{_escape(token)}</d:sync-token><d:sync-level>1</d:sync-level>" + _props(
        [(DAV, "getetag")]
    )
    return _xml("d:sync-collection", inner)


# --------------------------------------------------------------------------- parsing


class XmlError(ValueError):
    """The server's body is not the multistatus it should be."""


@dataclass(slots=True)
class DavResponse:
    """One ``<response>`` of a multistatus: its href (path, decoded) and what it says."""

    href: str  # decoded path
    raw_href: str  # as the server wrote it
    status: int | None = None  # response-level status (sync-collection: 404 = deleted)
    props: dict[str, ET.Element] = field(default_factory=dict)  # found (2xx) properties

    def text(self, name: str) -> str | None:
        element = self.props.get(name)
        if element is None:
            return None
        return (element.text or "").strip()

    def hrefs(self, name: str) -> list[str]:
        """The raw hrefs inside a property such as current-user-principal or
        calendar-home-set (absolute or relative: resolve them against the request URL)."""
        element = self.props.get(name)
        if element is None:
            return []
        return [h.text.strip() for h in element.iter(tag(DAV, "href")) if h.text]

    def has_child(self, name: str, child: str) -> bool:
        element = self.props.get(name)
        return element is not None and element.find(child) is not None


@dataclass(slots=True)
class Multistatus:
    """A parsed 207 body: the responses and, for sync-collection, the new sync-token."""

    responses: list[DavResponse]
    sync_token: str | None = None


def href_path(href: str) -> str:
    """The decoded path of an href that may be absolute (``https://host/a%20b/``) or a path."""
    href = href.strip()
    if "://" in href:
        href = urlsplit(href).path
    return unquote(href)


def _status_code(element: ET.Element | None) -> int | None:
    if element is None or not element.text:
        return None
    parts = element.text.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def parse_multistatus(body: bytes) -> Multistatus:
    """Parse a multistatus body; raises :class:`XmlError` when it is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise XmlError(f"malformed XML from the server: {exc}") from None
    if root.tag != tag(DAV, "multistatus"):
        raise XmlError(f"expected a DAV:multistatus, got {root.tag}")
    responses: list[DavResponse] = []
    for resp in root.findall(tag(DAV, "response")):
        href = resp.find(tag(DAV, "href"))
        if href is None or not href.text:
            continue
        item = DavResponse(
            href=href_path(href.text),
            raw_href=href.text.strip(),
            status=_status_code(resp.find(tag(DAV, "status"))),
        )
        for propstat in resp.findall(tag(DAV, "propstat")):
            code = _status_code(propstat.find(tag(DAV, "status")))
            prop = propstat.find(tag(DAV, "prop"))
            if prop is None or code is None or not 200 <= code < 300:
                continue
            for child in prop:
                item.props[child.tag] = child
        responses.append(item)
    token = root.find(tag(DAV, "sync-token"))
    return Multistatus(responses, token.text.strip() if token is not None and token.text else None)


def error_preconditions(body: bytes) -> set[str]:
    """The precondition elements of a ``DAV:error`` body (e.g. ``{DAV:}valid-sync-token``)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return set()
    if root.tag != tag(DAV, "error"):
        return set()
    return {child.tag for child in root}
