"""Digests on the console and in the file channel, and the item entries every channel lists."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

from services.notifier.channels.console import ConsoleChannel
from services.notifier.channels.digest import LINK_CHARS, entry, fit, top_item
from services.notifier.channels.file import FileChannel
from services.notifier.config import ConsoleChannelSettings, FileChannelSettings
from services.notifier.message import Message
from tests.integration.channel_cases import alert, digest, escalation, hostile_digest


async def printed(message: Message) -> str:
    stream = io.StringIO()
    await ConsoleChannel(ConsoleChannelSettings(kind="console", name="console"), stream=stream).send(message)
    return stream.getvalue()


async def test_console_prints_a_digest_title_then_one_indented_line_per_item() -> None:
    assert await printed(digest("dg-1:console", n=2)) == (
        "2 notifications for care (CRITICAL)\n"
        "    HIGH: [HIGH] case c-1 escalated to care (level 1)"
        " | \u201cI will sue you if my refund is not here by Friday\u201d | @ana (12,000 followers)"
        " | https://social.example/@ana/1 | ack: https://clamor.example/ack/c-1?sig=abc\n"
        "    CRITICAL: [CRITICAL] case c-2 escalated to care (level 1)"
        " | \u201cI will sue you if my refund is not here by Friday\u201d | @ana (12,000 followers)"
        " | https://social.example/@ana/2 | ack: https://clamor.example/ack/c-2?sig=abc\n"
    )


async def test_console_prints_a_single_message_as_before() -> None:
    assert await printed(escalation("esc-1:console")) == (
        "[HIGH] case c-1 escalated to care (level 1)\n"
        "    Why: legal threat from a large account\n"
        "    Author: @ana (12000 followers) on mastodon\n"
        "    Post: \u201cI will sue you if my refund is not here by Friday\u201d\n"
        "    Link: https://social.example/@ana/1\n"
    )


async def test_console_keeps_a_hostile_digest_to_one_line_per_item_without_control_characters() -> None:
    hostile = hostile_digest("dg-2:console", title="\x1b[2Jdigest\r\nforged")
    hostile = replace(hostile, items=(*hostile.items, replace(hostile.items[0], post_text="\x1b]8;;evil\x07x")))
    lines = (await printed(hostile)).split("\n")

    assert lines[0] == " [2Jdigest  forged"
    assert len(lines) == 1 + 4 + 1
    assert lines[-1] == ""
    assert all(line.startswith("    ") for line in lines[1:-1])
    assert not any(control in "".join(lines) for control in "\r\x1b\x07")
    # The post's own text may say "javascript:"; no link field of an item ever does.
    fields = [field for line in lines[1:-1] for field in line.strip().split(" | ")]
    assert not [field for field in fields if field.startswith(("javascript:", "ack: javascript:"))]
    assert lines[3].endswith(" | @mallory Bcc: victim@example.com (12,000 followers)")
    assert "@mallory Bcc: victim@example.com (12,000 followers)" in lines[1]


async def test_file_writes_a_digest_as_one_json_line_with_its_items(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    channel = FileChannel(FileChannelSettings(kind="file", name="outbox", path=path))
    message = digest("dg-1:outbox", n=3)

    first = await channel.send(message)
    again = await channel.send(message)

    [line] = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert (record["id"], record["channel"], record["title"]) == (
        "dg-1:outbox",
        "outbox",
        "3 notifications for care (CRITICAL)",
    )
    assert record["item_ids"] == ["esc-1:outbox", "esc-2:outbox", "esc-3:outbox"]
    assert [(item["case_id"], item["severity"], item["title"]) for item in record["items"]] == [
        ("c-1", "HIGH", "[HIGH] case c-1 escalated to care (level 1)"),
        ("c-2", "CRITICAL", "[CRITICAL] case c-2 escalated to care (level 1)"),
        ("c-3", "MEDIUM", "[MEDIUM] case c-3 escalated to care (level 1)"),
    ]
    assert record["items"][0] == {
        "id": "esc-1:outbox",
        "kind": "escalation",
        "severity": "HIGH",
        "title": "[HIGH] case c-1 escalated to care (level 1)",
        "case_id": "c-1",
        "quote": "I will sue you if my refund is not here by Friday",
        "note": "",
        "handle": "ana",
        "followers": 12000,
        "post_url": "https://social.example/@ana/1",
        "ack_url": "https://clamor.example/ack/c-1?sig=abc",
    }
    assert record["body"].split("\n")[2].startswith("MEDIUM: [MEDIUM] case c-3 escalated to care (level 1) | ")
    assert (first.detail, again.detail) == ("", "already in the file")


async def test_file_keeps_a_single_message_without_items(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    await FileChannel(FileChannelSettings(kind="file", name="outbox", path=path)).send(escalation("esc-1:outbox"))

    record = json.loads(path.read_text(encoding="utf-8"))
    assert "items" not in record
    assert "item_ids" not in record
    assert record["case_id"] == "c-1"


async def test_file_writes_a_hostile_digest_as_one_line_of_inert_items(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    await FileChannel(FileChannelSettings(kind="file", name="outbox", path=path)).send(hostile_digest("dg-2:outbox"))

    [line] = path.read_bytes().split(b"\n")[:-1]
    items = json.loads(line)["items"]
    assert [item["post_url"] for item in items] == ["", "", ""]
    assert [item["ack_url"] for item in items] == [
        "https://clamor.example/ack/c-1?sig=abc",
        "https://clamor.example/ack/c-2?sig=abc",
        "",
    ]
    assert all(
        "\r" not in value and "\n" not in value for item in items for value in item.values() if isinstance(value, str)
    )
    assert items[0]["handle"] == "mallory Bcc: victim@example.com"


def test_an_entry_quotes_the_post_on_one_line_clipped_to_160_characters() -> None:
    item = entry(escalation("esc-1", post_text="late\r\n" + "x" * 1000, author_handle="@ana"))

    assert item.quote == "late " + "x" * 154 + "…"
    assert item.author == "@ana (12,000 followers)"
    assert item.note == ""


def test_an_alert_entry_shows_its_reason_and_no_author() -> None:
    item = entry(alert("al-1", reason="5x the usual volume"))

    assert (item.quote, item.note, item.author, item.post_url, item.ack_url) == ("", "5x the usual volume", "", "", "")


def test_an_entry_keeps_only_short_https_links() -> None:
    too_long = "https://clamor.example/ack?" + "a" * LINK_CHARS
    item = entry(escalation("esc-1", post_url="http://social.example/1", ack_url=too_long))

    assert (item.post_url, item.ack_url) == ("", "")


def test_the_top_item_is_the_most_severe_and_the_earliest_of_equals() -> None:
    message = digest("dg-1", n=8)

    assert top_item(message).case_id == "c-2"
    assert top_item(replace(message, items=message.items[2:])).case_id == "c-6"


def test_fit_renders_the_most_items_that_fit_or_none() -> None:
    def render(count: int) -> str:
        return "x" * (10 * count)

    assert fit(render, 20, lambda text: len(text) <= 55) == "x" * 50
    assert fit(render, 20, lambda text: len(text) <= 500) == "x" * 200
    assert fit(render, 20, lambda text: len(text) <= 5) == ""
