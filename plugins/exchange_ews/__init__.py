"""calhub's Exchange Server provider plugin (``exchange_ews``): EWS through exchangelib.

Loaded through the ``calhub.providers`` entry point like any third-party plugin. Importing it
does not need exchangelib; :meth:`EwsProvider.open` does.
"""

from __future__ import annotations

from hub.spec import ProviderRegistry, hookimpl
from plugins.exchange_ews.provider import EwsProvider

__all__ = ["EwsProvider", "calhub_register_providers"]


@hookimpl
def calhub_register_providers(register: ProviderRegistry) -> None:
    """Register the exchange_ews provider class."""
    register.add(EwsProvider)
