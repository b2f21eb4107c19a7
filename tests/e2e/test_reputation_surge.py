"""A surge replayed through the whole mesh becomes one reputation alert in the PR channel, with its context.

The five services run as processes, as in production. A replay file holds three days of ordinary
complaints about one brand at this time of day (the baseline), then a wave of posts about a recipe
that tastes odd, written in the last hour. Triage classifies them with the shipped model, the router
places them into cases, the reputation service counts them and tests the brand's volume, and the
notifier delivers the alert to a file channel that stands for the PR team's channel.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import yaml

from services.cli.mesh import load_mesh_config
from services.shared.nats_server import free_port
from tests.e2e.mesh import Mesh, outbox_lines

if TYPE_CHECKING:
    from pathlib import Path

BASELINE = (
    "I was charged twice for order {n} and support has ignored me for a week",
    "My parcel {n} never arrived and customer service keeps closing my ticket without an answer",
    "Refund for order {n} still missing after three weeks, nobody replies to my emails",
)
# Worded so the shipped model reads them as complaints with a margin (it is weaker on taste complaints
# than on billing ones: docs/triage-model.md); the mesh, not the model, is under test here.
SURGE = (
    "What happened to Crunchy Oats? The new recipe tastes odd and support won't answer me, batch {n}",
    "What happened to Crunchy Oats? The new recipe tastes odd and my kids refused it, batch {n}",
)


def replay_file(folder: Path, now: datetime) -> Path:
    rows: list[dict[str, Any]] = []

    def row(n: int, text: str, at: datetime, followers: int = 120) -> None:
        rows.append(
            {
                "id": f"p{n:04d}",
                "text": text.format(n=n),
                "platform": "mastodon",
                "language": "en",
                "watch": "acme",
                "url": f"https://social.example/@user{n}/{n}",
                "created_at": at.isoformat(),
                "author": {"handle": f"user{n}", "display_name": f"User {n}", "followers": followers},
            }
        )

    n = 0
    for day in (1, 2, 3):
        for minutes in (12, 37):
            n += 1
            row(n, BASELINE[n % 3], now - timedelta(days=day, minutes=minutes))
    for k in range(24):
        n += 1
        row(n, SURGE[k % 2], now - timedelta(minutes=45 - k * 1.5), followers=480_000 if k == 4 else 150)
    path = folder / "surge.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def configure(mesh: Mesh, posts: Path) -> None:
    config = {
        "nats": {"url": mesh.nats_url},
        "telemetry": {"log_format": "json"},
        "listener": {
            "grpc": {"port": free_port()},
            "sources": [{"name": "surge", "kind": "replay", "path": str(posts), "rate_per_second": 200}],
        },
        "triage": {"grpc": {"port": free_port()}, "batch_size": 16, "batch_wait_ms": 100},
        "router": {"grpc": {"port": free_port()}, "outbox": {"path": "outbox.jsonl"}, "escalate_at": "CRITICAL"},
        "reputation": {"grpc": {"port": free_port()}, "tick_s": 1},
        "notifier": {
            "grpc": {"port": free_port()},
            "channels": [{"kind": "file", "name": "pr", "path": "pr.jsonl"}],
            "alert_channels": ["pr"],
            "grouping": {"group_by": ["topic"], "group_wait_s": 0, "group_interval_s": 0},
            "tick_s": 0.2,
        },
    }
    mesh.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    mesh.config = load_mesh_config(mesh.config_path)


def test_a_replayed_surge_reaches_the_pr_channel_as_one_alert_with_its_context(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    posts = replay_file(tmp_path, now)
    mesh = Mesh(tmp_path, posts)
    configure(mesh, posts)
    mesh.start()
    try:
        mesh.wait_ready()
        mesh.wait_idle()
        deadline = time.monotonic() + 60
        alerts: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not alerts:
            alerts = [n for n in outbox_lines_or_empty(tmp_path / "pr.jsonl") if "reputation spike" in n["title"]]
            time.sleep(0.5)
    finally:
        mesh.stop()
    assert alerts, mesh.logs()
    assert {a["source_id"] for a in alerts} == {alerts[0]["source_id"]}, "one surge, one alert"
    alert = alerts[-1]
    assert alert["title"].endswith("reputation spike: acme")
    body = alert["body"]
    assert "complaints about acme" in body
    assert "against a baseline of 2" in body
    assert "recipe" in body.split("top terms:", 1)[1].splitlines()[0]
    assert "most reached: @user" in body
    assert "480,000" in body
    assert "cases: c_" in body
    assert len(outbox_lines(mesh.outbox)) >= 20  # the wave's posts became cases as well


def outbox_lines_or_empty(path: Path) -> list[dict[str, Any]]:
    return outbox_lines(path) if path.exists() else []
