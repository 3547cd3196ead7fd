"""CalDAV provider plugin (phones via DAVx5/iOS, Nextcloud, iCloud, Fastmail, Radicale).

Registered through the ``calhub.providers`` entry point like any third-party plugin.
"""

from __future__ import annotations

from hub.spec import ProviderRegistry, hookimpl
from plugins.caldav.provider import CalDAVProvider


@hookimpl
def calhub_register_providers(register: ProviderRegistry) -> None:
    """Register the ``caldav`` provider."""
    register.add(CalDAVProvider)


__all__ = ["CalDAVProvider", "calhub_register_providers"]
