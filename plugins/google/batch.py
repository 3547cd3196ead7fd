"""Google's batch endpoint: up to 50 Calendar calls in one ``multipart/mixed`` request.

aiogoogle has no batch support (``Request.batch_requests`` raises NotImplementedError), so
calhub builds the batch itself from requests aiogoogle built: each part is
``Content-Type: application/http`` with a ``Content-ID``, holding one HTTP request (method,
path and query, its headers, its JSON body); the outer request carries the token, which
Google applies to every part. The answer is ``multipart/mixed`` too, one ``application/http``
part per call with ``Content-ID: <response-ID>``, possibly in another order: parts are
matched by Content-ID, never by position.

Google's guide names 1000 calls as the limit of one batch; calhub sends at most 50 (the
documented practical size: larger batches are more often throttled whole).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiogoogle.models import Request

from hub.spec import CalendarRef, PermanentError
from plugins.google.client import Response
from plugins.google.errors import error_for

if TYPE_CHECKING:
    from plugins.google.client import GoogleHttp

MAX_BATCH = 50
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_CONTENT_ID = re.compile(r"^<?response-(.+?)>?$")


def batch_body(requests: Sequence[Request], boundary: str) -> bytes:
    """The multipart/mixed body: part *i* is Content-ID ``<item{i}>``."""
    if not 0 < len(requests) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1..{MAX_BATCH} calls, not {len(requests)}")
    chunks: list[str] = []
    for i, req in enumerate(requests):
        split = urlsplit(str(req.url))
        target = split.path + (f"?{split.query}" if split.query else "")
        lines = [f"{req.method} {target} HTTP/1.1"]
        for key, value in (req.headers or {}).items():
            if key.lower() != "authorization":  # the outer request's token applies
                lines.append(f"{key}: {value}")
        payload = ""
        if req.json is not None:
            payload = json.dumps(req.json, ensure_ascii=False)
            lines.append("Content-Type: application/json; charset=UTF-8")
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <item{i}>\r\n\r\n"
            + "\r\n".join(lines)
            + "\r\n\r\n"
            + payload
            + "\r\n"
        )
    chunks.append(f"--{boundary}--\r\n")
    return "".join(chunks).encode("utf-8")


def parse_batch(content_type: str, text: str) -> dict[str, Response]:
    """The parts of a batch answer by request Content-ID (``item3``)."""
    match = _BOUNDARY.search(content_type or "")
    if not match or not content_type.lower().startswith("multipart/mixed"):
        raise PermanentError(f"google: batch answered {content_type!r}, not multipart/mixed")
    delimiter = "--" + match.group(1)
    out: dict[str, Response] = {}
    for raw in text.split(delimiter)[1:]:
        if raw.startswith("--"):
            break  # the close delimiter
        part_headers, inner = _split_head(raw.strip("\r\n"))
        content_id = _CONTENT_ID.match(part_headers.get("content-id", "").strip())
        if content_id is None:
            raise PermanentError("google: batch part without a response Content-ID")
        status_line, _, rest = inner.partition("\n")
        fields = status_line.split()
        if len(fields) < 2 or not fields[1].isdigit():
            raise PermanentError(f"google: batch part with status line {status_line!r}")
        headers, body_text = _split_head(rest)
        out[content_id.group(1)] = Response(int(fields[1]), headers, _decode(body_text))
    return out


async def run_batch(
    http: GoogleHttp, cal: CalendarRef, requests: Sequence[Request], *, operation: str
) -> list[Response]:
    """Send ``requests`` (at most 50) in one batch; one :class:`Response` each, in order.

    Raises the hub error when the batch request itself fails (auth, throttling of the whole
    call); a call's failure is returned as its response for the caller to map.
    """
    boundary = "calhub_" + secrets.token_hex(12)
    outer = Request(
        method="POST",
        url=http.batch_url,
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
        data=batch_body(requests, boundary),
    )
    reply = await http.send(cal, outer, operation=operation, calls=len(requests))
    if not reply.ok:
        raise error_for(reply.status, reply.headers, reply.body, mailbox=cal.mailbox)
    content_type = next((v for k, v in reply.headers.items() if k.lower() == "content-type"), "")
    parts = parse_batch(content_type, reply.body if isinstance(reply.body, str) else "")
    missing = [i for i in range(len(requests)) if f"item{i}" not in parts]
    if missing:
        raise PermanentError(f"google: batch answer lacks the parts of calls {missing}")
    return [parts[f"item{i}"] for i in range(len(requests))]


def _split_head(text: str) -> tuple[dict[str, str], str]:
    """Header lines up to the first empty line, lower-cased names; the rest as is."""
    normalised = text.replace("\r\n", "\n")
    head, _, rest = normalised.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _decode(text: str) -> object:
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"error": {"code": 0, "message": text[:200], "errors": []}}
