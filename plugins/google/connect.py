"""Builds an account's :class:`~plugins.google.client.GoogleHttp` from its options: the
credential mode (service account or personal), the TLS context, the per-user limits.

Only imported from :meth:`GoogleProvider.open`, so the plugin registers without aiogoogle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio

from hub.spec import AccountConfig, AgentSecrets, PermanentError, Telemetry
from plugins.google.auth import DEFAULT_TOKEN_URL, ServiceAccountTokens, UserTokens
from plugins.google.client import GoogleHttp, UserLimits, session_factory, tls_context

TIMEOUT_S = 60.0


async def connect(
    account: AccountConfig,
    telemetry: Telemetry,
    secrets: Callable[[], AgentSecrets | None],
    *,
    base_url: str,
    concurrency: int,
) -> GoogleHttp:
    """The HTTP client of ``account``; PermanentError names a missing or contradictory key."""
    opts = account.options
    context = await anyio.to_thread.run_sync(tls_context, opts.get("ca_file"))
    sessions = session_factory(context, TIMEOUT_S)
    key_file = opts.get("service_account_file")
    client_id = opts.get("client_id")
    tokens: ServiceAccountTokens | UserTokens
    if key_file and client_id:
        raise PermanentError(
            "google: set service_account_file (Workspace) or client_id (personal), not both"
        )
    if key_file:
        key = await anyio.to_thread.run_sync(_read_key, str(key_file))
        token_url = str(opts.get("token_url") or key.get("token_uri") or DEFAULT_TOKEN_URL)
        tokens = ServiceAccountTokens(key, token_url, sessions, account.name)
    elif client_id:
        secret = opts.get("client_secret")
        if not secret:
            raise PermanentError("google: client_id needs client_secret_env (or _file)")
        tokens = UserTokens(
            client_id=str(client_id),
            client_secret=str(secret),
            token_url=str(opts.get("token_url") or DEFAULT_TOKEN_URL),
            sessions=sessions,
            account=account.name,
            secrets=secrets,
        )
    else:
        raise PermanentError(
            "google: no credential: set service_account_file (Workspace) "
            "or client_id + client_secret_env (personal accounts)"
        )
    limits = UserLimits(concurrency, int(opts.get("requests_per_minute") or 500))
    return GoogleHttp(
        base_url=base_url,
        tokens=tokens,
        sessions=sessions,
        account=account.name,
        telemetry=telemetry,
        limits=limits,
    )


def _read_key(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            key = json.load(handle)
    except OSError as exc:
        raise PermanentError(f"google: service_account_file {path!r}: {exc.strerror}") from None
    except ValueError:
        raise PermanentError(f"google: service_account_file {path!r} is not JSON") from None
    if not isinstance(key, dict):
        raise PermanentError(f"google: service_account_file {path!r} is not a key file")
    return key
