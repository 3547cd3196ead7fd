"""Access tokens per agent: a Workspace service account impersonating each agent, or each
agent's own refresh token (personal accounts, from ``calhub authorize``).

Both go through aiogoogle's auth managers, with what calhub decides around them:

* **One token per agent.** aiogoogle's ``ServiceAccountManager`` caches one token for one
  ``subject``; calhub keeps one manager per agent's email, behind a lock, so concurrent
  requests of one agent fetch one token, and a refused delegation affects that agent only.
* **No shared state.** ``Oauth2Manager`` reads its token endpoint from a module-level dict of
  Google's OpenID configuration; calhub gives each manager its own copy with the account's
  ``token_url`` instead of editing the module's dict (which every account would share).
* **Refresh tokens stay in the database.** A user's refresh token is read through
  :class:`hub.spec.AgentSecrets` when an access token is needed, held in memory only for the
  refresh, and never formatted into an error, a log line or a repr. ``invalid_grant``
  (revoked, expired, password changed) is an AuthError for that agent naming the command to
  run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiogoogle.auth.creds import ClientCreds, ServiceAccountCreds, UserCreds
from aiogoogle.auth.data import WELLKNOWN_OPENID_CONFIGS
from aiogoogle.auth.managers import Oauth2Manager, ServiceAccountManager
from aiogoogle.excs import HTTPError
from aiogoogle.models import Request
from aiogoogle.sessions.aiohttp_session import AiohttpSession

from hub.spec import AgentSecrets, AuthError, CalendarRef, PermanentError, TransientError
from plugins.google.errors import reason_of

SCOPE = "https://www.googleapis.com/auth/calendar.events"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
# The fields of a service-account key file that ServiceAccountCreds takes.
_KEY_FIELDS = (
    "type",
    "project_id",
    "private_key_id",
    "private_key",
    "client_email",
    "client_id",
    "auth_uri",
    "token_uri",
    "auth_provider_x509_cert_url",
    "client_x509_cert_url",
    "universe_domain",
)

SessionFactory = Callable[[], AiohttpSession]


def authorize_hint(account: str, agent_id: str) -> str:
    return f"run `calhub authorize {account} --agent {agent_id}`"


class ServiceAccountTokens:
    """Tokens of a service account with domain-wide delegation, one per impersonated agent."""

    def __init__(
        self, key: Mapping[str, Any], token_url: str, sessions: SessionFactory, account: str
    ) -> None:
        if key.get("type") != "service_account" or not key.get("private_key"):
            raise PermanentError("google: service_account_file is not a service-account key")
        if not key.get("client_email"):
            raise PermanentError("google: service_account_file has no client_email")
        self._key = {k: key[k] for k in _KEY_FIELDS if k in key}
        self._key["token_uri"] = token_url
        self.client_email = str(key["client_email"])
        self._sessions = sessions
        self.account = account
        self._managers: dict[str, ServiceAccountManager] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def authorize(self, cal: CalendarRef, request: Request) -> None:
        subject = cal.mailbox.strip().lower()
        if not subject:
            raise PermanentError(f"google: agent {cal.agent_id} has no email to impersonate")
        async with self._locks.setdefault(subject, asyncio.Lock()):
            manager = self._managers.get(subject)
            if manager is None:
                creds = ServiceAccountCreds(**self._key, subject=cal.mailbox, scopes=[SCOPE])
                manager = ServiceAccountManager(self._sessions, creds=creds)
                self._managers[subject] = manager
            try:
                await manager.refresh()
            except Exception as exc:
                self._managers.pop(subject, None)
                raise token_error(exc, cal, what=f"impersonating {cal.mailbox}") from None
        manager.authorize(request)

    def forget(self, cal: CalendarRef) -> None:
        """Drop the agent's cached token (the API refused it): the next request fetches one."""
        self._managers.pop(cal.mailbox.strip().lower(), None)


class UserTokens:
    """Tokens of personal accounts: each agent's refresh token, kept in the hub's database."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_url: str,
        sessions: SessionFactory,
        account: str,
        secrets: Callable[[], AgentSecrets | None],
    ) -> None:
        self._client = ClientCreds(client_id=client_id, client_secret=client_secret)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_url = token_url
        self.sessions = sessions
        self.account = account
        self._secrets = secrets
        self._creds: dict[str, UserCreds] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def manager(self) -> Oauth2Manager:
        """An aiogoogle OAuth2 manager for this account's client and token endpoint."""
        manager = Oauth2Manager(self.sessions, client_creds=self._client)
        # Its own copy: the module's dict is shared by every manager of every account.
        manager.openid_configs = {**WELLKNOWN_OPENID_CONFIGS, "token_endpoint": self.token_url}
        return manager

    async def authorize(self, cal: CalendarRef, request: Request) -> None:
        async with self._locks.setdefault(cal.agent_id, asyncio.Lock()):
            creds = self._creds.get(cal.agent_id)
            if creds is None:
                creds = UserCreds(refresh_token=await self._refresh_token(cal))
            try:
                _, creds = await self.manager().refresh(creds, client_creds=self._client)
            except Exception as exc:
                self._creds.pop(cal.agent_id, None)
                raise token_error(
                    exc, cal, what="refreshing the agent's token", consent_of=self.account
                ) from None
            self._creds[cal.agent_id] = creds
        Oauth2Manager.authorize(request, creds)

    def forget(self, cal: CalendarRef) -> None:
        self._creds.pop(cal.agent_id, None)

    async def _refresh_token(self, cal: CalendarRef) -> str:
        secrets = self._secrets()
        token = await secrets.get(cal.agent_id) if secrets is not None else None
        if not token:
            raise AuthError(
                f"google: agent {cal.agent_id} has not authorized calhub yet: "
                f"{authorize_hint(self.account, cal.agent_id)}",
                mailbox=cal.mailbox,
            )
        return token


def token_error(
    exc: BaseException, cal: CalendarRef, *, what: str, consent_of: str | None = None
) -> Exception:
    """The hub error for a failed token request (aiogoogle's HTTPError, aiohttp, google-auth).

    The message carries Google's error code and description, never the request (whose body
    holds the refresh token or the signed assertion).
    """
    if isinstance(exc, HTTPError):
        res = exc.res
        status = getattr(res, "status_code", 0) or 0
        body = getattr(res, "json", None)
        code, description = reason_of(body)
        text = f"google: {what}: token endpoint {status} {code}: {description}".rstrip(": ")
        if status == 429 or status >= 500:
            return TransientError(text)
        if code == "invalid_grant" and consent_of is not None:
            # The agent's consent is gone (revoked, expired, password changed): only a new
            # consent helps, and only for this agent.
            text += f"; {authorize_hint(consent_of, cal.agent_id)}"
        return AuthError(text, mailbox=cal.mailbox)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return TransientError(f"google: {what}: {type(exc).__name__}: {exc}")
    # google-auth refusing the key (malformed PEM), aiogoogle's own checks
    return PermanentError(f"google: {what}: {type(exc).__name__}: {exc}")
