"""Finding an agent's calendar collection: RFC 6764/5397/4791 discovery, cached per calendar.

From the account URL: ``current-user-principal`` (trying ``/.well-known/caldav`` when the URL
is a bare host), then the principal's ``calendar-home-set``, then the calendar: the principal's
``schedule-default-calendar-URL`` when it names one, else the first collection (by href) that
holds VEVENTs. An agent's ``calendar`` key skips all of this: a full collection URL, or a path
relative to the account URL (how a shared service account points at each agent's calendar).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from hub.spec import CalendarRef, NotFoundError, PermanentError
from plugins.caldav import davxml
from plugins.caldav.client import XML, DavClient
from plugins.caldav.davxml import CALDAV, DAV, tag
from plugins.caldav.errors import raise_for

_PRINCIPAL_PROPS = [
    (DAV, "current-user-principal"),
    (CALDAV, "calendar-home-set"),
    (DAV, "resourcetype"),
]
_HOME_PROPS = [(CALDAV, "calendar-home-set"), (CALDAV, "schedule-default-calendar-URL")]
_COLLECTION_PROPS = [
    (DAV, "resourcetype"),
    (CALDAV, "supported-calendar-component-set"),
    (DAV, "displayname"),
]


@dataclass(frozen=True, slots=True)
class Collection:
    """A calendar collection: its absolute URL (ending in ``/``) and decoded path."""

    url: str

    @property
    def path(self) -> str:
        return davxml.href_path(self.url)


def collection_url(base_url: str, calendar: str) -> str:
    """The collection URL an agent's ``calendar`` key names (absolute, or relative to base)."""
    url = urljoin(base_url, calendar.strip())
    return url if url.endswith("/") else url + "/"


def _holds_events(response: davxml.DavResponse) -> bool:
    comps = response.props.get(tag(CALDAV, "supported-calendar-component-set"))
    if comps is None:
        return True  # RFC 4791: absent means every component type
    return any(c.get("name", "").upper() == "VEVENT" for c in comps)


class Discovery:
    """Discovery for one account; results are cached for the provider's lifetime."""

    def __init__(self, client: DavClient) -> None:
        self._client = client
        self._principal: str | None = None
        self._collections: dict[str, Collection] = {}

    async def _propfind(
        self, url: str, props: list[tuple[str, str]], depth: str, operation: str
    ) -> tuple[str, davxml.Multistatus]:
        reply = await self._client.request(
            "PROPFIND", url, operation=operation, body=davxml.propfind(props),
            content_type=XML, depth=depth,
        )  # fmt: skip
        raise_for(reply.status, reply.headers, operation="PROPFIND", resource=url)
        if reply.status != 207:
            raise PermanentError(f"PROPFIND {url}: expected 207 Multi-Status, got {reply.status}")
        try:
            return reply.url, davxml.parse_multistatus(reply.body)
        except davxml.XmlError as exc:
            raise PermanentError(f"PROPFIND {url}: {exc}") from None

    async def principal(self) -> str:
        """The current user's principal URL."""
        if self._principal is not None:
            return self._principal
        base = self._client.base_url
        candidates = [base]
        if urlsplit(base).path in ("", "/"):
            candidates.append(urljoin(base, "/.well-known/caldav"))
        for url in candidates:
            try:
                answered, status = await self._propfind(url, _PRINCIPAL_PROPS, "0", "discover")
            except (NotFoundError, PermanentError):
                continue  # not a DAV resource here: try the next candidate
            for response in status.responses:
                hrefs = response.hrefs(tag(DAV, "current-user-principal"))
                if hrefs:
                    self._principal = urljoin(answered, hrefs[0])
                    return self._principal
                if response.hrefs(tag(CALDAV, "calendar-home-set")):
                    self._principal = answered
                    return self._principal
        raise NotFoundError(f"no current-user-principal found at {base}")

    async def home(self) -> tuple[str, str | None]:
        """The calendar home URL and the principal's default calendar URL (if it names one)."""
        principal = await self.principal()
        answered, status = await self._propfind(principal, _HOME_PROPS, "0", "discover")
        for response in status.responses:
            homes = response.hrefs(tag(CALDAV, "calendar-home-set"))
            if homes:
                home = urljoin(answered, homes[0])
                self._client.trust(home)
                defaults = response.hrefs(tag(CALDAV, "schedule-default-calendar-URL"))
                return home, urljoin(answered, defaults[0]) if defaults else None
        raise NotFoundError(f"principal {principal} has no calendar-home-set")

    async def default_calendar(self) -> Collection:
        home, preferred = await self.home()
        answered, status = await self._propfind(home, _COLLECTION_PROPS, "1", "discover")
        calendars = sorted(
            urljoin(answered, r.raw_href)
            for r in status.responses
            if r.has_child(tag(DAV, "resourcetype"), tag(CALDAV, "calendar")) and _holds_events(r)
        )
        if preferred is not None and preferred in calendars:
            return Collection(collection_url(preferred, ""))
        if not calendars:
            raise NotFoundError(f"no calendar holding events in the calendar home {home}")
        return Collection(collection_url(calendars[0], ""))

    async def collection(self, cal: CalendarRef) -> Collection:
        """The collection of one agent calendar (discovered once, then cached)."""
        cached = self._collections.get(cal.calendar)
        if cached is not None:
            return cached
        if cal.calendar.strip():
            found = Collection(collection_url(self._client.base_url, cal.calendar))
            self._client.trust(found.url)
        else:
            found = await self.default_calendar()
        self._collections[cal.calendar] = found
        return found

    def forget(self, cal: CalendarRef) -> None:
        """Drop a cached collection (it was not found where discovery said)."""
        self._collections.pop(cal.calendar, None)
