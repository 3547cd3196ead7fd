"""App-only credentials for Graph through azure-identity (client secret or certificate).

Only imported from :meth:`GraphProvider.open`, so the plugin registers without the
``calhub[graph]`` extra. The async credentials talk to ``{authority}/{tenant}/oauth2/v2.0/token``
directly (no instance discovery), over TLS verified against ``ca_file`` when given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import CertificateCredential, ClientSecretCredential

from hub.spec import PermanentError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Graph hosts of the national clouds; a token for one of them is scoped to that host.
NATIONAL_GRAPH_HOSTS = frozenset(
    {
        "graph.microsoft.com",
        "graph.microsoft.us",
        "dod-graph.microsoft.us",
        "microsoftgraph.chinacloudapi.cn",
        "graph.microsoft.de",
    }
)


def build_credential(options: Mapping[str, Any]) -> AsyncTokenCredential:
    """The azure-identity credential for the account's options; PermanentError names a
    missing or contradictory key."""
    tenant, client = options.get("tenant_id"), options.get("client_id")
    for key, value in (("tenant_id", tenant), ("client_id", client)):
        if not value:
            raise PermanentError(f"graph365: option {key} is required")
    kwargs: dict[str, Any] = {}
    if options.get("authority"):
        kwargs["authority"] = str(options["authority"])
    if options.get("ca_file"):
        kwargs["connection_verify"] = str(options["ca_file"])
    secret, cert = options.get("client_secret"), options.get("certificate_file")
    if secret and cert:
        raise PermanentError("graph365: set client_secret or certificate_file, not both")
    try:
        if cert:
            return CertificateCredential(str(tenant), str(client), str(cert), **kwargs)
        if secret:
            return ClientSecretCredential(str(tenant), str(client), str(secret), **kwargs)
    except (ValueError, OSError) as exc:
        raise PermanentError(f"graph365: credentials refused: {exc}") from exc
    raise PermanentError("graph365: no credential: set client_secret_env/_file or certificate_file")


def scope_for(base_url: str, explicit: str | None = None) -> str:
    """The token scope: explicit, the national cloud's Graph host, or Graph's global one
    (a proxy or test base_url still stands for Graph, whose audience the token must carry)."""
    if explicit:
        return explicit
    host = (urlsplit(base_url).hostname or "").lower()
    return f"https://{host}/.default" if host in NATIONAL_GRAPH_HOSTS else GRAPH_SCOPE
