"""calhub: calendar sync hub for IT helpdesks.

Plugins write ``from hub import hookimpl, Provider`` and register their provider classes in a
``calhub_register_providers`` hook implementation (see docs/plugins.md).
"""

from hub.spec import (
    AccountConfig,
    AuthError,
    CalendarRef,
    CheckItem,
    CursorInvalid,
    EventData,
    FetchResult,
    NotFoundError,
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
    TransientError,
    Window,
    hookimpl,
)

__version__ = "0.1.0"

__all__ = [
    "AccountConfig",
    "AuthError",
    "CalendarRef",
    "CheckItem",
    "CursorInvalid",
    "EventData",
    "FetchResult",
    "NotFoundError",
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
    "TransientError",
    "Window",
    "__version__",
    "hookimpl",
]
