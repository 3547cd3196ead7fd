"""calhub's Google Calendar provider plugin (``google``): Workspace service accounts with
domain-wide delegation, or personal accounts authorized once per agent.

Loaded through the ``calhub.providers`` entry point like any third-party plugin. Importing it
needs no aiogoogle; :meth:`GoogleProvider.open` does.
"""

from __future__ import annotations

from hub.spec import ProviderRegistry, hookimpl
from plugins.google.provider import GoogleProvider

__all__ = ["GoogleProvider", "calhub_register_providers"]


@hookimpl
def calhub_register_providers(register: ProviderRegistry) -> None:
    """Register the google provider class."""
    register.add(GoogleProvider)
