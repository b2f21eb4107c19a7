"""Settings of the router's CRM destinations: one pydantic model per kind, told apart by ``kind``.

Every destination names itself, says which private or loopback hosts it may reach
(``allow_hosts``, handed to the SSRF guard exactly as the notifier's channels do), how long one
request may take, its rate budget (a token bucket of ``rate_per_s`` with ``burst``) and how long a
case is retried before it is dead-lettered. The rate defaults follow each vendor's documented
limits, with room left for the other integrations that share the same account.

Secrets are plain strings meant to be written as ``${ENV}`` references; they are left out of
``repr`` so a logged settings object never shows them. URLs must be https: a credential or a
signed body must not cross the network in clear, so http is accepted only for a host the
operator listed in ``allow_hosts`` (a local test double, a sidecar proxy).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from services.shared.config import Section
from services.shared.standard_webhooks import secret_key

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
DAY_S = 24 * 3600.0


def _host_allowed(host: str, allow_hosts: list[str]) -> bool:
    """Whether ``host`` is listed in ``allow_hosts`` by name, address or CIDR block."""
    if host.lower().rstrip(".") in {entry.lower().rstrip(".") for entry in allow_hosts}:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in allow_hosts:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def check_url(url: str, allow_hosts: list[str]) -> str:
    """``url`` when it is https (or http to an allowed host) with a host; ValueError otherwise.

    The message names the host, never the whole URL: paths and queries of webhook URLs often
    hold a credential.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an absolute https URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; use the destination's secret settings")
    if parts.scheme == "http" and not _host_allowed(host, allow_hosts):
        raise ValueError(f"must be https: http is accepted only for a host listed in allow_hosts ({host!r} is not)")
    return url


class DestinationCommonSettings(Section):
    """What every HTTP destination has."""

    name: str = Field(pattern=NAME_PATTERN)
    # Hosts, IPs or CIDRs this destination may reach although they are private or loopback.
    allow_hosts: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=15.0, gt=0, le=120)
    # Requests per second (a token bucket); each kind's default follows its vendor's documented limit.
    rate_per_s: float = Field(default=10.0, gt=0, le=1000)
    # Requests that may go at once after a quiet spell.
    burst: int = Field(default=5, ge=1, le=100)
    # How long a case keeps being retried before it is dead-lettered (the default is one day).
    retry_for_s: float = Field(default=DAY_S, gt=0, le=7 * DAY_S)

    # Subclasses declare their URL fields after allow_hosts, so it is validated (in info.data) first.
    @field_validator("url", "base_url", "instance_url", check_fields=False)
    @classmethod
    def _urls_are_https(cls, url: str, info: ValidationInfo) -> str:
        return check_url(url, info.data.get("allow_hosts", [])) if url else url


class WebhookDestinationSettings(DestinationCommonSettings):
    """Any HTTP endpoint: a CloudEvents 1.0 JSON event per change, signed per Standard Webhooks."""

    kind: Literal["webhook"]
    url: str = Field(repr=False)
    # "whsec_<base64>" secrets; several allow rotation (each signs, receivers accept any).
    secrets: list[str] = Field(min_length=1, repr=False)
    rate_per_s: float = Field(default=20.0, gt=0, le=1000)

    @field_validator("secrets")
    @classmethod
    def _secrets_are_base64(cls, secrets: list[str]) -> list[str]:
        for secret in secrets:
            secret_key(secret)
        return secrets


class ZendeskDestinationSettings(DestinationCommonSettings):
    """Zendesk Support: tickets through the Tickets API, with an agent's API token."""

    kind: Literal["zendesk"]
    # The account's subdomain ("acme" for acme.zendesk.com); or base_url for a proxy or a test double.
    subdomain: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9-]{0,62})?$")
    base_url: str = ""
    # The agent the token belongs to; tickets and comments are written as this agent.
    email: str = Field(min_length=3)
    api_token: str = Field(min_length=1, repr=False)
    ticket_type: Literal["problem", "incident", "question", "task"] = "problem"
    # Zendesk allows 700 requests a minute on Suite Professional; 10/s leaves room for other integrations.
    rate_per_s: float = Field(default=10.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _one_address(self) -> ZendeskDestinationSettings:
        if bool(self.subdomain) == bool(self.base_url):
            raise ValueError("give exactly one of subdomain and base_url")
        return self

    @property
    def api_base(self) -> str:
        return (self.base_url or f"https://{self.subdomain}.zendesk.com").rstrip("/")


class SalesforceDestinationSettings(DestinationCommonSettings):
    """Salesforce Service Cloud: Case records through the REST API, OAuth 2.0 client credentials."""

    kind: Literal["salesforce"]
    # The org's My Domain URL, e.g. https://acme.my.salesforce.com (the client credentials flow needs it).
    instance_url: str
    client_id: str = Field(min_length=1, repr=False)
    client_secret: str = Field(min_length=1, repr=False)
    api_version: str = Field(default="61.0", pattern=r"^[1-9][0-9]\.0$")
    # A custom Case field marked "External ID" and "Unique" that holds Clamor's case id.
    external_id_field: str = Field(default="Clamor_Case_Id__c", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,36}__c$")
    origin: str = Field(default="Social", min_length=1, max_length=40)
    new_status: str = Field(default="New", min_length=1, max_length=40)
    closed_status: str = Field(default="Closed", min_length=1, max_length=40)
    # Salesforce counts API calls per day rather than per second; 5/s keeps a busy day within the allowance.
    rate_per_s: float = Field(default=5.0, gt=0, le=1000)

    @property
    def api_base(self) -> str:
        return self.instance_url.rstrip("/")


class HubSpotDestinationSettings(DestinationCommonSettings):
    """HubSpot Service Hub: tickets through the CRM v3 objects API, with a private app's token."""

    kind: Literal["hubspot"]
    base_url: str = "https://api.hubapi.com"
    access_token: str = Field(min_length=1, repr=False)
    # A custom ticket property created with "unique value" on: it holds Clamor's case id.
    case_id_property: str = Field(default="clamor_case_id", pattern=r"^[a-z][a-z0-9_]{0,99}$")
    # The default "Support Pipeline" and its "New" and "Closed" stages; portals that changed them say so here.
    pipeline: str = Field(default="0", min_length=1)
    open_stage: str = Field(default="1", min_length=1)
    closed_stage: str = Field(default="4", min_length=1)
    # The HubSpot account id, only used to build links to tickets; empty gives no link.
    portal_id: str = Field(default="", pattern=r"^[0-9]*$")
    # Private apps may make 100 requests per 10 seconds (Free/Starter) and more on higher tiers.
    rate_per_s: float = Field(default=10.0, gt=0, le=1000)

    @property
    def api_base(self) -> str:
        return self.base_url.rstrip("/")


class ServiceNowDestinationSettings(DestinationCommonSettings):
    """ServiceNow: incidents through the Table API, with basic auth or an OAuth bearer token."""

    kind: Literal["servicenow"]
    # e.g. https://acme.service-now.com
    instance_url: str
    username: str = ""
    password: str = Field(default="", repr=False)
    token: str = Field(default="", repr=False)
    # sys_id of the user incidents are opened for; empty leaves the instance's default.
    caller_id: str = Field(default="", pattern=r"^[0-9a-f]{0,32}$")
    # A value of the instance's "Resolution code" choice list.
    close_code: str = Field(default="Resolved by caller", min_length=1, max_length=40)
    # Instances rate-limit per user through rules the admin sets; 5/s stays clear of common limits.
    rate_per_s: float = Field(default=5.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> ServiceNowDestinationSettings:
        basic = bool(self.username or self.password)
        if basic == bool(self.token):
            raise ValueError("give either username and password, or token")
        if basic and not (self.username and self.password):
            raise ValueError("basic auth needs both username and password")
        return self

    @property
    def api_base(self) -> str:
        return self.instance_url.rstrip("/")


HttpDestinationSettings = Annotated[
    WebhookDestinationSettings
    | ZendeskDestinationSettings
    | SalesforceDestinationSettings
    | HubSpotDestinationSettings
    | ServiceNowDestinationSettings,
    Field(discriminator="kind"),
]
