"""Errors of the admin endpoint and the middleware that turns every failure into JSON.

Every error leaves as ``{"error": "...", "field": "..."}`` (``field`` only when one input is at
fault): :class:`ApiError` from the handlers, :class:`hub.rules.RuleError` from the rules,
aiohttp's own HTTP exceptions (unknown route, wrong method, oversize body), and the store's
errors (a constraint is a 409, an unusable database a 503). Anything else is a bug: it is
logged with its traceback and the client gets a plain JSON 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from hub.rules import Invalid, NotFound, RuleError, StateConflict
from hub.store.base import ConstraintError, StoreError

log = logging.getLogger("hub.admin")

_RULE_STATUS: dict[type[RuleError], int] = {NotFound: 404, StateConflict: 409, Invalid: 422}


class ApiError(Exception):
    """An error answer: HTTP ``status``, a message for people, and the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming ``field``."""
    return ApiError(422, message, field=field)


def error_response(
    status: int,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Map every failure to a JSON error; never let a traceback reach the client."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.field, exc.headers)
    except RuleError as exc:
        return error_response(_RULE_STATUS.get(type(exc), 422), exc.message, exc.field)
    except ConstraintError as exc:  # lost a race the handler's own checks could not see
        return error_response(409, str(exc))
    except StoreError as exc:
        log.error("admin request %s %s: %s", request.method, request.path, exc)
        return error_response(503, "the database is unavailable; retry shortly")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 413:
            message = f"request body too large (at most {request.client_max_size} bytes)"
        elif exc.status == 404:
            message = f"no route {request.path}"
        kept = {name: exc.headers[name] for name in ("Allow",) if name in exc.headers}
        return error_response(exc.status, message, headers=kept)
    except ConnectionError:
        raise  # the client hung up (mid-body): nobody to answer; the server logs it once
    except Exception:
        log.exception("admin request %s %s failed", request.method, request.path)
        return error_response(500, "internal error; see the service log")
