"""Destination settings: one model per kind, https unless allowed, secrets out of repr, errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from services.router.delivery.destinations import build_destination
from services.router.delivery.destinations.hubspot import HubSpotDestination
from services.router.delivery.destinations.salesforce import SalesforceDestination
from services.router.delivery.destinations.servicenow import ServiceNowDestination
from services.router.delivery.destinations.settings import (
    HttpDestinationSettings,
    ServiceNowDestinationSettings,
    WebhookDestinationSettings,
    ZendeskDestinationSettings,
)
from services.router.delivery.destinations.webhook import WebhookDestination
from services.router.delivery.destinations.zendesk import ZendeskDestination
from services.shared.config import load_config
from services.shared.errors import ConfigError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ADAPTER: TypeAdapter[HttpDestinationSettings] = TypeAdapter(HttpDestinationSettings)
MINIMAL: dict[str, dict[str, Any]] = {
    "webhook": {"url": "https://hooks.example/clamor", "secrets": [SECRET]},
    "zendesk": {"subdomain": "acme", "email": "agent@acme.example", "api_token": "zd-token"},
    "salesforce": {"instance_url": "https://acme.my.salesforce.com", "client_id": "key", "client_secret": "sf-secret"},
    "hubspot": {"access_token": "pat-token"},
    "servicenow": {"instance_url": "https://acme.service-now.com", "username": "clamor", "password": "sn-pass"},
}


def parse(kind: str, **changes: Any) -> HttpDestinationSettings:
    return ADAPTER.validate_python({"kind": kind, "name": f"{kind}-1"} | MINIMAL[kind] | changes)


@pytest.mark.parametrize(
    ("kind", "rate_per_s"),
    [("webhook", 20.0), ("zendesk", 10.0), ("salesforce", 5.0), ("hubspot", 10.0), ("servicenow", 5.0)],
)
def test_each_kind_parses_with_its_vendor_s_rate_budget_and_a_day_of_retries(kind: str, rate_per_s: float) -> None:
    settings = parse(kind)

    assert settings.kind == kind
    assert settings.rate_per_s == rate_per_s
    assert settings.retry_for_s == 86400
    assert settings.burst >= 1


@pytest.mark.parametrize(
    ("kind", "destination_type"),
    [
        ("webhook", WebhookDestination),
        ("zendesk", ZendeskDestination),
        ("salesforce", SalesforceDestination),
        ("hubspot", HubSpotDestination),
        ("servicenow", ServiceNowDestination),
    ],
)
async def test_build_destination_makes_the_adapter_of_the_kind(kind: str, destination_type: type) -> None:
    destination = build_destination(parse(kind))
    try:
        assert isinstance(destination, destination_type)
        assert destination.name == f"{kind}-1"
    finally:
        await destination.aclose()


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        ADAPTER.validate_python({"kind": "jira", "name": "j"})


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse("hubspot", acess_token="typo")


@pytest.mark.parametrize("name", ["", "Care", "-care", "care team", "x" * 64])
def test_names_are_short_lower_case_slugs(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        parse("hubspot", name=name)


def test_http_is_refused_unless_the_host_is_allowed_and_the_url_stays_out_of_the_message() -> None:
    with pytest.raises(ValidationError, match="must be https") as caught:
        parse("webhook", url="http://hooks.example/clamor?token=urlsecret42")

    (error,) = caught.value.errors()
    assert error["loc"] == ("webhook", "url")
    assert "urlsecret42" not in error["msg"]


@pytest.mark.parametrize("allow", ["127.0.0.1", "127.0.0.0/8", "LOCALHOST"])
def test_http_is_accepted_for_a_host_listed_in_allow_hosts(allow: str) -> None:
    host = "localhost" if allow == "LOCALHOST" else "127.0.0.1"

    settings = parse("servicenow", instance_url=f"http://{host}:8080", allow_hosts=[allow])

    assert isinstance(settings, ServiceNowDestinationSettings)
    assert settings.api_base == f"http://{host}:8080"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://files.example/x", "absolute https URL"),
        ("hooks.example/clamor", "absolute https URL"),
        ("https://user:pw@hooks.example/", "must not carry credentials"),
    ],
)
def test_urls_must_be_absolute_https_without_credentials(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse("webhook", url=url)


def test_zendesk_takes_a_subdomain_or_a_base_url_not_both() -> None:
    assert isinstance(zendesk := parse("zendesk"), ZendeskDestinationSettings)
    assert zendesk.api_base == "https://acme.zendesk.com"
    with pytest.raises(ValidationError, match="exactly one of subdomain and base_url"):
        parse("zendesk", base_url="https://support.acme.example")
    with pytest.raises(ValidationError, match="subdomain"):
        parse("zendesk", subdomain="acme.evil.example")


@pytest.mark.parametrize(
    "auth",
    [{"username": "", "password": ""}, {"token": "t"}, {"username": "clamor", "password": ""}],
    ids=["none", "both", "half"],
)
def test_servicenow_takes_either_basic_auth_or_a_token(auth: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="username and password"):
        parse("servicenow", **auth)


def test_a_webhook_secret_that_is_not_base64_is_refused() -> None:
    with pytest.raises(ValidationError, match="not base64"):
        parse("webhook", secrets=["whsec_not!base64"])


def test_salesforce_external_id_field_must_be_a_custom_field() -> None:
    with pytest.raises(ValidationError, match="external_id_field"):
        parse("salesforce", external_id_field="Id")


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_secrets_never_show_in_repr(kind: str) -> None:
    shown = repr(parse(kind))

    for secret in ("zd-token", "sf-secret", "pat-token", "sn-pass", SECRET, "hooks.example"):
        assert secret not in shown


def test_settings_are_frozen() -> None:
    settings = parse("webhook")
    assert isinstance(settings, WebhookDestinationSettings)

    with pytest.raises(ValidationError, match="frozen"):
        settings.timeout_s = 1.0


class _DestinationsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    destinations: list[HttpDestinationSettings]


def test_secrets_come_from_env_references_and_errors_name_the_field_and_line(tmp_path: Path) -> None:
    path = tmp_path / "clamor.yaml"
    path.write_text(
        "destinations:\n"
        "  - kind: zendesk\n"
        "    name: zd\n"
        "    subdomain: acme\n"
        "    email: agent@acme.example\n"
        "    api_token: ${ZENDESK_TOKEN}\n"
        "  - kind: hubspot\n"
        "    name: hs\n"
        "    access_token: ${HUBSPOT_TOKEN}\n"
        "    base_url: http://hubspot.internal.example\n",
        encoding="utf-8",
    )
    environ = {"ZENDESK_TOKEN": "zd-from-env", "HUBSPOT_TOKEN": "pat-from-env"}

    with pytest.raises(ConfigError, match=r"destinations\[1\]\.base_url \(.*clamor\.yaml:10\): must be https"):
        load_config(_DestinationsFile, path, environ=environ)

    path.write_text(path.read_text(encoding="utf-8").replace("http://", "https://"), encoding="utf-8")
    loaded = load_config(_DestinationsFile, path, environ=environ)
    zendesk = loaded.destinations[0]
    assert isinstance(zendesk, ZendeskDestinationSettings)
    assert zendesk.api_token == "zd-from-env"
