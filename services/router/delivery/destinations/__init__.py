"""CRM destinations of the router, one module per vendor, all behind :class:`base.Destination`.

``build_destination`` turns one validated settings entry into its adapter. Modules are imported
on first use, so a deployment that routes to one CRM never loads the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from services.shared.clock import Clock, system_clock

if TYPE_CHECKING:
    from services.router.delivery.destinations.base import Destination
    from services.router.delivery.destinations.settings import HttpDestinationSettings
    from services.shared.outbound import OutboundClient

# kind → "module:Class".
DESTINATIONS: dict[str, str] = {
    "webhook": "services.router.delivery.destinations.webhook:WebhookDestination",
    "zendesk": "services.router.delivery.destinations.zendesk:ZendeskDestination",
    "salesforce": "services.router.delivery.destinations.salesforce:SalesforceDestination",
    "hubspot": "services.router.delivery.destinations.hubspot:HubSpotDestination",
    "servicenow": "services.router.delivery.destinations.servicenow:ServiceNowDestination",
}


def build_destination(
    settings: HttpDestinationSettings, *, http: OutboundClient | None = None, clock: Clock = system_clock
) -> Destination:
    """The adapter for ``settings``; with ``http`` it uses (and never closes) that client."""
    module_name, class_name = DESTINATIONS[settings.kind].split(":")
    destination_type: Any = getattr(importlib.import_module(module_name), class_name)
    destination: Destination = destination_type(settings, http=http, clock=clock)
    return destination
