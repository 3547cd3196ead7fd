"""JSON ``$batch``: up to 20 Graph requests in one HTTP request, each with its own result.

msgraph-core's ``BatchRequestItem`` keeps the request's absolute URL (and its version-strip
regex never matches), so Graph answers every item with 400 "Resource not found for the segment
'v1.0'" (msgraph-sdk-python#1015, msgraph-sdk-python-core#1116). calhub builds the batch body
itself: each url is made relative to base_url (``/users/...``, never ``/v1.0/users/...``).

Graph runs a batch's requests in parallel, and more than 4 at once against one mailbox are
throttled (MailboxConcurrency). Items are therefore chained into 4 lanes with ``dependsOn``
(item *i* waits for item *i-4*). When an item fails, its lane's later items come back 424
Failed Dependency without having run; :func:`run_batch` sends those again at once, without the
failed one, instead of reporting them as failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hub.spec import PermanentError
from plugins.graph365.errors import error_for
from plugins.graph365.wire import PREFER, Response

if TYPE_CHECKING:
    from plugins.graph365.client import GraphHttp

MAX_BATCH = 20
LANES = 4


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request of a batch; ``url`` absolute (under base_url) or relative to it."""

    method: str
    url: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def relative_url(base_url: str, url: str) -> str:
    """``url`` relative to base_url, as $batch wants it: ``/users/...``, no version segment."""
    base_path = urlsplit(base_url).path.rstrip("/")
    split = urlsplit(url)  # an absolute or a relative url alike
    path = split.path
    if base_path and (path == base_path or path.startswith(base_path + "/")):
        path = path[len(base_path) :]
    if not path.startswith("/"):
        path = "/" + path
    return f"{path}?{split.query}" if split.query else path


def batch_body(base_url: str, requests: Sequence[BatchRequest]) -> dict[str, Any]:
    """The ``$batch`` JSON body: ids "1".."n", relative urls, Prefer on every item, lanes."""
    if not 0 < len(requests) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1..{MAX_BATCH} requests, not {len(requests)}")
    items: list[dict[str, Any]] = []
    for i, req in enumerate(requests):
        headers = {"Prefer": PREFER, **req.headers}
        item: dict[str, Any] = {
            "id": str(i + 1),
            "method": req.method,
            "url": relative_url(base_url, req.url),
        }
        if req.body is not None:
            headers["Content-Type"] = "application/json"
            item["body"] = req.body
        item["headers"] = headers
        if i >= LANES:
            item["dependsOn"] = [str(i + 1 - LANES)]
        items.append(item)
    return {"requests": items}


async def run_batch(
    http: GraphHttp, mailbox: str, requests: Sequence[BatchRequest], *, operation: str
) -> list[Response]:
    """Send ``requests`` (at most 20) in one ``$batch``; one :class:`Response` each, in order.

    Raises the hub error when the batch request itself fails (auth, throttling of the whole
    call, a malformed batch); item failures are returned as responses for the caller to map.
    """
    results: dict[int, Response] = {}
    todo = list(range(len(requests)))
    while todo:
        body = batch_body(http.base_url, [requests[i] for i in todo])
        reply = await http.send(
            "POST",
            f"{http.base_url}/$batch",
            mailbox=mailbox,
            operation=operation,
            body=body,
            weight=min(LANES, len(todo)),
        )
        if not reply.ok:
            raise error_for(reply.status, reply.headers, reply.body, mailbox=mailbox)
        by_id = _responses(reply.body)
        retry: list[int] = []
        for pos, index in enumerate(todo):
            item = by_id.get(str(pos + 1))
            if item is None:
                raise PermanentError(f"graph365: $batch response lacks item {pos + 1}")
            if item.status == 424:
                retry.append(index)  # never ran: its lane predecessor failed
            else:
                results[index] = item
        if len(retry) == len(todo):
            for index in retry:  # no progress: report rather than loop
                results[index] = by_id[str(todo.index(index) + 1)]
            break
        todo = retry
    return [results[i] for i in range(len(requests))]


def _responses(body: Any) -> dict[str, Response]:
    items = body.get("responses") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise PermanentError("graph365: $batch response without 'responses'")
    out: dict[str, Response] = {}
    for item in items:
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        out[str(item.get("id"))] = Response(int(item.get("status", 500)), headers, item.get("body"))
    return out
