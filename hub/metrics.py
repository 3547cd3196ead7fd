"""Prometheus metrics of one hub instance, on its own registry (no process-global state).

It also implements :class:`hub.spec.Telemetry`, so providers report each API request to it,
and :class:`hub.boundary.CallLog`, so the hub's wrapper reports each contract call. Both
status labels are :class:`hub.spec.CallStatus` values (a plugin's own label is mapped).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hub.spec import CallStatus

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Counters, gauges and histograms served at GET /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.syncs = Counter(
            "calhub_sync_passes",
            "Sync passes by account and result",
            ["account", "result"],
            registry=r,
        )
        self.sync_failures = Counter(
            "calhub_sync_failures",
            "Sync passes that did not end ok",
            ["account", "reason"],
            registry=r,
        )
        self.sync_seconds = Histogram(
            "calhub_sync_pass_seconds",
            "Duration of one agent's sync pass",
            ["account"],
            registry=r,
        )
        self.items = Counter(
            "calhub_sync_items",
            "Items applied by sync passes",
            ["account", "action"],
            registry=r,
        )
        self.api_requests = Counter(
            "calhub_provider_requests",
            "Provider API requests",
            ["account", "operation", "status"],
            registry=r,
        )
        self.api_latency = Histogram(
            "calhub_provider_request_seconds",
            "Provider API request latency",
            ["account", "operation"],
            registry=r,
        )
        self.calls = Counter(
            "calhub_provider_calls",
            "Provider contract calls (fetch, push, ...) by outcome",
            ["account", "operation", "status"],
            registry=r,
        )
        self.queue = Gauge("calhub_sync_queue_depth", "Agent passes waiting to run", registry=r)
        self.running = Gauge("calhub_sync_running", "Agent passes running now", registry=r)
        self.attention = Gauge(
            "calhub_agents_needing_attention",
            "Agents whose last pass needs an admin",
            registry=r,
        )
        self.http = Counter(
            "calhub_admin_requests",
            "Admin endpoint requests",
            ["method", "route", "status"],
            registry=r,
        )

    # hub.spec.Telemetry
    def request(self, account: str, operation: str, status: str, seconds: float) -> None:
        self.api_requests.labels(account, operation, CallStatus.parse(status)).inc()
        self.api_latency.labels(account, operation).observe(seconds)

    # hub.boundary.CallLog
    def provider_call(
        self, account: str, operation: str, status: CallStatus, seconds: float
    ) -> None:
        self.calls.labels(account, operation, CallStatus.parse(status)).inc()

    def sync_pass(self, account: str, result: str, seconds: float, error_kind: str = "") -> None:
        self.syncs.labels(account, result).inc()
        self.sync_seconds.labels(account).observe(seconds)
        if result not in ("ok", "skipped"):
            self.sync_failures.labels(account, error_kind or result).inc()

    def sync_items(self, account: str, counts: dict[str, int]) -> None:
        for action, n in counts.items():
            if n:
                self.items.labels(account, action).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
