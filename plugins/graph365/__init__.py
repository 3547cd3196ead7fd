"""calhub's Microsoft 365 provider plugin (``graph365``): Microsoft Graph with app-only auth.

Loaded through the ``calhub.providers`` entry point like any third-party plugin. Importing it
needs neither msgraph-sdk nor azure-identity; :meth:`GraphProvider.open` does.
"""

from __future__ import annotations

from hub.spec import ProviderRegistry, hookimpl
from plugins.graph365.provider import GraphProvider

__all__ = ["GraphProvider", "calhub_register_providers"]


@hookimpl
def calhub_register_providers(register: ProviderRegistry) -> None:
    """Register the graph365 provider class."""
    register.add(GraphProvider)
