"""Turning posts into Mentions: a replayed JSON line (or a MalformedPostError naming the field), a polled post."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from clamor.v1 import mention_pb2
from services.listener.domain import MAX_TEXT_CHARS, mention_from_post, mention_from_replay_line
from services.listener.errors import MalformedPostError
from services.listener.sources.base import Post
from services.shared.errors import PermanentError

DISCOVERED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def post(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "p0001",
        "platform": "x",
        "author": {"handle": "@api_annie", "display_name": "Api Annie", "followers": 75},
        "created_at": "2026-11-01T00:38:29Z",
        "url": "https://microblog.example/api_annie/status/1",
        "language": "en",
        "watch": "nimbus",
        "text": "Nimbus API returning 502s since this morning.",
    }
    base.update(overrides)
    return base


def parse(raw: dict[str, Any] | str, *, source: str = "sample", watch: str = "") -> mention_pb2.Mention:
    line = raw if isinstance(raw, str) else json.dumps(raw)
    return mention_from_replay_line(line, source=source, watch=watch, discovered_at=DISCOVERED)


def test_mention_id_is_source_and_native_id() -> None:
    mention = parse(post())
    assert (mention.id, mention.source, mention.native_id) == ("sample:p0001", "sample", "p0001")


def test_mention_id_is_the_same_on_every_parse() -> None:
    assert parse(post()).id == parse(post(text="edited later")).id


def test_numeric_native_id_is_kept_as_text() -> None:
    assert parse(post(id=1864815141701802854)).id == "sample:1864815141701802854"


def test_post_fields_are_carried() -> None:
    mention = parse(post())
    assert (mention.platform, mention.text, mention.language, mention.url) == (
        "x",
        "Nimbus API returning 502s since this morning.",
        "en",
        "https://microblog.example/api_annie/status/1",
    )


def test_author_fields_are_carried_without_the_at_sign() -> None:
    author = parse(post()).author
    assert (author.handle, author.display_name, author.followers) == ("api_annie", "Api Annie", 75)


def test_missing_author_gives_an_anonymous_author() -> None:
    raw = post()
    del raw["author"]
    author = parse(raw).author
    assert (author.handle, author.followers) == ("", 0)


def test_missing_platform_defaults_to_replay() -> None:
    raw = post()
    del raw["platform"]
    assert parse(raw).platform == "replay"


def test_created_at_is_the_posts_time_in_utc() -> None:
    mention = parse(post(created_at="2026-11-01T09:38:29+09:00"))
    assert mention.created_at.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 1, 0, 38, 29, tzinfo=UTC)


def test_created_at_without_offset_is_taken_as_utc() -> None:
    mention = parse(post(created_at="2026-11-01T00:38:29"))
    assert mention.created_at.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 1, 0, 38, 29, tzinfo=UTC)


def test_missing_created_at_falls_back_to_discovery_time() -> None:
    raw = post()
    del raw["created_at"]
    assert parse(raw).created_at.ToDatetime(tzinfo=UTC) == DISCOVERED


def test_discovered_at_is_recorded_in_utc() -> None:
    local = DISCOVERED.astimezone(timezone(timedelta(hours=-5)))
    mention = mention_from_replay_line(json.dumps(post()), source="s", watch="", discovered_at=local)
    assert mention.discovered_at.ToDatetime(tzinfo=UTC) == DISCOVERED


def test_watch_argument_overrides_the_posts_watch() -> None:
    assert parse(post(watch="nimbus"), watch="skylark").watch == "skylark"


def test_empty_watch_argument_keeps_the_posts_watch() -> None:
    assert parse(post(watch="nimbus"), watch="").watch == "nimbus"


def test_line_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedPostError, match=r"^not JSON"):
        parse('{"id": "p1", "text": ')


def test_json_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedPostError, match=r"^not a JSON object"):
        parse('["p1", "text"]')


MALFORMED = [
    pytest.param(json.dumps(post(id="")), "id", id="empty-id"),
    pytest.param(json.dumps({k: v for k, v in post().items() if k != "id"}), "id", id="missing-id"),
    pytest.param(json.dumps({k: v for k, v in post().items() if k != "text"}), "text", id="missing-text"),
    pytest.param(json.dumps(post(text=["not", "a", "string"])), "text", id="text-not-a-string"),
    pytest.param(json.dumps(post(created_at="yesterday")), "created_at", id="bad-created-at"),
    pytest.param(json.dumps(post(created_at=1730419109)), "created_at", id="numeric-created-at"),
    pytest.param(json.dumps(post(author={"followers": -1})), "author.followers", id="negative-followers"),
    pytest.param(json.dumps(post(author={"followers": "many"})), "author.followers", id="text-followers"),
    pytest.param(json.dumps(post(author="annie")), "author", id="author-not-an-object"),
    pytest.param(json.dumps(post(text="x" * (MAX_TEXT_CHARS + 1))), "text", id="text-over-limit"),
]


@pytest.mark.parametrize(("line", "field"), MALFORMED)
def test_malformed_line_raises_naming_the_field(line: str, field: str) -> None:
    with pytest.raises(MalformedPostError, match=rf"^{re.escape(field)} "):
        parse(line)


def test_malformed_post_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError):
        parse("{not json")


def test_text_at_the_limit_is_accepted() -> None:
    assert len(parse(post(text="x" * MAX_TEXT_CHARS)).text) == MAX_TEXT_CHARS


def test_a_polled_post_is_not_the_brands_own_unless_told() -> None:
    reply = Post(native_id="1", text="@leah_g so sorry, DM us", author_handle="VoltioRides")
    plain = mention_from_post(reply, source="s", platform="x", watch="voltio", discovered_at=DISCOVERED)
    own = mention_from_post(reply, source="s", platform="x", watch="voltio", discovered_at=DISCOVERED, own_account=True)
    assert (plain.own_account, own.own_account) == (False, True)
    assert own.author.handle == "VoltioRides"


def test_a_replayed_post_is_not_the_brands_own_by_itself() -> None:
    # The replay source marks own posts by their watch; the line alone says nothing about it.
    assert not parse(post(author={"handle": "NimbusCloud"})).own_account
