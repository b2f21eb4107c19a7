"""The README's router example is a config that loads: documentation that cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from services.router.config import RouterConfig
from services.shared.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def yaml_block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    start = section.index("```yaml") + len("```yaml")
    return section[start : section.index("```", start)]


def test_the_router_example_loads_with_its_rules_policies_and_destinations(tmp_path: Path) -> None:
    path = tmp_path / "clamor.yaml"
    path.write_text(yaml_block_after("## Cases, routing and CRMs"), encoding="utf-8")
    environ = {"ZENDESK_TOKEN": "zd", "CLAMOR_WEBHOOK_SECRET": SECRET, "CLAMOR_CALLBACK_SECRET": SECRET}
    router = load_config(RouterConfig, path, environ=environ).router
    assert [rule.name for rule in router.rules] == ["everything-to-zendesk", "legal", "by-category"]
    assert [policy.name for policy in router.sla_policies] == ["standard", "urgent"]
    assert [d.name for d in router.destinations] == ["zendesk", "crm-hook", "warehouse"]
    assert router.callback.enabled


def test_the_reputation_example_loads_for_the_reputation_service_and_the_notifier(tmp_path: Path) -> None:
    from services.notifier.config import NotifierConfig  # noqa: PLC0415 - only this test needs the notifier
    from services.reputation.config import ReputationConfig  # noqa: PLC0415 - nor the reputation service

    path = tmp_path / "clamor.yaml"
    path.write_text(yaml_block_after("## Reputation alerts and trends"), encoding="utf-8")
    environ = {"PR_SLACK_WEBHOOK": "https://hooks.slack.com/services/T0/B0/x"}
    reputation = load_config(ReputationConfig, path, environ=environ).reputation
    assert reputation.keywords.keywords == ["mold", "smell", "recall"]
    assert (reputation.spikes.window_s, reputation.spikes.baseline_days) == (3600, 7)
    assert load_config(NotifierConfig, path, environ=environ).notifier.alert_channels == ["pr-slack"]
