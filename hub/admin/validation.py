"""Parsing of JSON bodies and query strings into typed values, with field-level errors.

A body is read whole (within ``client_max_size``), must be a JSON object, and may carry only
the fields a route names: an unknown field is a 422, not silently ignored, so a misspelt
``estimate_minute`` cannot plan a request with the default estimate. Each parser takes the raw
value and the field name and raises :func:`~hub.admin.errors.invalid` naming that field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from hub.admin.errors import ApiError, invalid
from hub.model import Policy, is_colour
from hub.spec import as_utc

Parser = Callable[[Any, str], Any]

MAX_TEXT = 10_000
MAX_DEPTH = 16  # no route's body nests deeper than 3; json recurses once per level
MAX_MINUTES = 31 * 24 * 60  # a month: longer blocks are a typo, not an appointment
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")
_EARLIEST, _LATEST = 1900, 2999  # keeps date arithmetic far from datetime's limits
# In a query string an unencoded "+" arrives as a space: "09:00:00 02:00" meant "+02:00".
_LOST_PLUS = re.compile(r" (\d\d:?\d\d)$")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def nesting_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``raw`` (brackets inside strings
    do not count). Cheap and flat, so a hostile body is measured without recursing."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", raw)):
        if bracket in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


async def read_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (400 when it is not one). With ``optional`` an
    empty body reads as ``{}``."""
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    # The parser recurses once per level: 1,000 nested arrays would end in RecursionError.
    if nesting_depth(raw) > MAX_DEPTH:
        raise ApiError(400, f"body nests arrays or objects deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def parse_fields(
    body: Mapping[str, Any],
    parsers: Mapping[str, Parser],
    required: tuple[str, ...] = (),
    *,
    nullable: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Parse the fields present in ``body`` with their parsers; unknown or missing → 422.

    A JSON ``null`` reads as absent, except for the ``nullable`` fields, where it is kept as
    ``None`` (PATCH: "clear this value")."""
    for name in body:
        if name not in parsers:
            raise invalid(name, f"unknown field {name!r}; allowed: {', '.join(sorted(parsers))}")
    for name in required:
        if body.get(name) is None:
            raise invalid(name, "required")
    parsed: dict[str, Any] = {}
    for name, value in body.items():
        if value is not None:
            parsed[name] = parsers[name](value, name)
        elif name in nullable:
            parsed[name] = None
    return parsed


# --------------------------------------------------------------------------- parsers


def text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if len(value) > MAX_TEXT:
        raise invalid(field, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise invalid(field, "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # "\ud800": JSON can carry it, UTF-8 (and SQLite) cannot
            raise invalid(field, "contains a lone UTF-16 surrogate, which is not text") from None
    return value


def nonempty_text(value: Any, field: str) -> str:
    value = text(value, field)
    if not value.strip():
        raise invalid(field, "must not be empty")
    return value


def line(value: Any, field: str) -> str:
    """One line of text: no line breaks or other control characters (a name, shown as the
    title of the agent's calendar feed)."""
    value = text(value, field)
    if _CONTROL.search(value):
        raise invalid(field, "must be one line without control characters")
    return value


def identifier(value: Any, field: str) -> str:
    """An id usable in a URL path segment: letters, digits and ``. _ @ : -``, 1-128 long."""
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if not _ID.fullmatch(value):
        raise invalid(
            field, "must be 1-128 letters, digits or . _ @ : - (starting with a letter or digit)"
        )
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(field, "must be true or false")
    return value


def minutes(value: Any, field: str) -> int:
    """A positive whole number of minutes, at most a month."""
    # bool is an int in Python; "true minutes" is a caller's bug, not 1 minute.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, "must be a whole number of minutes")
    if value <= 0:
        raise invalid(field, "must be greater than 0")
    if value > MAX_MINUTES:
        raise invalid(field, f"must be at most {MAX_MINUTES} (31 days)")
    return value


def version(value: Any, field: str) -> int:
    """An appointment version given as a precondition: a whole number, at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(field, "must be the whole version number the entry was read with")
    return value


def moment(value: Any, field: str) -> datetime | date:
    """An ISO 8601 time with offset (or ``Z``), returned in UTC, or a date (all-day)."""
    if not isinstance(value, str):
        raise invalid(field, "must be an ISO 8601 string")
    try:
        parsed: datetime | date = (
            datetime.fromisoformat(value) if "T" in value.upper() else date.fromisoformat(value)
        )
    except ValueError as exc:
        raise invalid(
            field, f"not an ISO 8601 time or date: {value!r} (e.g. 2026-05-04T09:00:00+02:00)"
        ) from exc
    if not _EARLIEST <= parsed.year <= _LATEST:
        raise invalid(field, f"year must be between {_EARLIEST} and {_LATEST}")
    if isinstance(parsed, datetime):
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise invalid(field, "time needs an offset such as +02:00 or Z")
        return parsed.astimezone(UTC)
    return parsed


def instant(value: Any, field: str) -> datetime:
    """Like :func:`moment`, but a date is refused: the field needs a time of day."""
    parsed = moment(value, field)
    if not isinstance(parsed, datetime):
        raise invalid(field, "must be a time with offset, not a date")
    return parsed


def agent_list(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise invalid(field, "must be a list of agent ids")
    return tuple(identifier(item, field) for item in value)


def agent_policy(value: Any, field: str) -> Policy:
    """An agent's own policy: never, always or ask ("agent" is the hub's delegation)."""
    choices = (Policy.NEVER, Policy.ALWAYS, Policy.ASK)
    if not isinstance(value, str) or value not in choices:
        raise invalid(field, f"must be one of {', '.join(choices)}")
    return Policy(value)


def colour(value: Any, field: str) -> str:
    if not is_colour(value):
        raise invalid(field, "must be a colour such as #3a87ad")
    return value


def email(value: Any, field: str) -> str:
    value = text(value, field)
    if value and ("@" not in value or len(value) > 320 or any(c.isspace() for c in value)):
        raise invalid(field, "must be an email address")
    return value


# --------------------------------------------------------------------------- query strings


def query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, refusing unknown or repeated ones (422)."""
    params: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            raise invalid(name, f"unknown parameter {name!r}; allowed: {', '.join(allowed)}")
        if name in params:
            raise invalid(name, "given twice")
        params[name] = value
    return params


def query_moment(value: str, field: str) -> datetime | date:
    """:func:`moment` of a query parameter, whose unencoded ``+`` arrived as a space."""
    return moment(_LOST_PLUS.sub(r"+\1", value), field)


def query_span(
    params: Mapping[str, str], default_start: datetime | None = None
) -> tuple[datetime | None, datetime | None]:
    """The span ``[from, to)`` of the query parameters ``from`` and ``to`` (dates are
    midnight UTC), ``default_start`` when ``from`` is absent; 422 when ``to`` is not after
    ``from``."""
    start = as_utc(query_moment(params["from"], "from")) if "from" in params else default_start
    end = as_utc(query_moment(params["to"], "to")) if "to" in params else None
    if start is not None and end is not None and end <= start:
        raise invalid("to", "must be after from")
    return start, end


def limit(value: str, field: str, *, most: int = 1000) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        raise invalid(field, "must be a whole number") from exc
    if not 1 <= n <= most:
        raise invalid(field, f"must be between 1 and {most}")
    return n
