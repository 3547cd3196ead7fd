"""calhub's Outlook provider plugin (``mapi``): Outlook through its MAPI profile.

Two halves in one package. In the hub, :class:`MapiProvider` relays every contract call over
the WebSocket of the agent's Outlook agent (:mod:`plugins.mapi.provider`). On the agent's PC,
``calhub outlook-agent`` (:mod:`plugins.mapi.command`, :mod:`plugins.mapi.agent`) answers
those calls with Outlook's object model, in one COM thread (:mod:`plugins.mapi.sta`);
:mod:`plugins.mapi.outlook` is the only module that touches COM. :mod:`plugins.mapi.wire`
is the JSON both halves speak.
"""

from __future__ import annotations

from hub.spec import ProviderRegistry, hookimpl
from plugins.mapi.provider import MapiProvider

__all__ = ["MapiProvider", "calhub_register_providers"]


@hookimpl
def calhub_register_providers(register: ProviderRegistry) -> None:
    """Register the mapi provider class."""
    register.add(MapiProvider)
