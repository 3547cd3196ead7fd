"""calhub: calendar sync hub for IT helpdesks.

Plugins write ``from hub import hookimpl, Provider`` and register their provider classes in a
``calhub_register_providers`` hook implementation (see docs/plugins.md). Everything a plugin
needs is re-exported here from :mod:`hub.spec`; ``account_config`` builds the
``AccountConfig`` the config loader would (defaults applied, the provider's option check run)
for a plugin's tests.
"""

from hub.spec import (
    AccountConfig,
    AgentSecrets,
    AttentionNeeded,
    AuthError,
    CalendarRef,
    CallStatus,
    CheckItem,
    CursorInvalid,
    EventData,
    FetchResult,
    NotFoundError,
    NullTelemetry,
    Option,
    PermanentError,
    PreconditionFailed,
    Provider,
    ProviderError,
    ProviderRegistry,
    PushItem,
    PushOutcome,
    PushResult,
    RemoteEvent,
    SkippedEvent,
    Telemetry,
    TransientError,
    Window,
    account_config,
    as_utc,
    hookimpl,
)

__version__ = "0.1.0"

__all__ = [
    "AccountConfig",
    "AgentSecrets",
    "AttentionNeeded",
    "AuthError",
    "CalendarRef",
    "CallStatus",
    "CheckItem",
    "CursorInvalid",
    "EventData",
    "FetchResult",
    "NotFoundError",
    "NullTelemetry",
    "Option",
    "PermanentError",
    "PreconditionFailed",
    "Provider",
    "ProviderError",
    "ProviderRegistry",
    "PushItem",
    "PushOutcome",
    "PushResult",
    "RemoteEvent",
    "SkippedEvent",
    "Telemetry",
    "TransientError",
    "Window",
    "__version__",
    "account_config",
    "as_utc",
    "hookimpl",
]
