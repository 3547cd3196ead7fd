"""Routes /health and /metrics, and the middleware that counts admin requests."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Middleware

from hub.admin.context import hub_of
from hub.metrics import CONTENT_TYPE, Metrics

routes = web.RouteTableDef()
CLIENT_GONE = 499  # "client closed request", as nginx counts it


@routes.get("/health", name="health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/metrics", name="metrics")
async def metrics(request: web.Request) -> web.Response:
    # CONTENT_TYPE carries a charset parameter, which aiohttp's content_type= refuses.
    return web.Response(
        body=hub_of(request).metrics.render(), headers={"Content-Type": CONTENT_TYPE}
    )


def counting_middleware(metrics: Metrics) -> Middleware:
    """Count every admin request by method, route template (not raw path) and status."""

    @web.middleware
    async def middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except (ConnectionError, asyncio.CancelledError):
            status = CLIENT_GONE  # the client hung up: not the hub's failure, not a 500
            raise
        finally:
            metrics.http.labels(request.method, route, str(status)).inc()

    return middleware
