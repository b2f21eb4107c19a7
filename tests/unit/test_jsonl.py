"""IdempotentJsonlFile: each key written at most once, across restarts and torn writes."""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING

import pytest

from services.shared.jsonl import IdempotentJsonlFile

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "out" / "cases.jsonl"


def test_first_append_writes_one_line(path: Path) -> None:
    file = IdempotentJsonlFile(path)
    assert file.append({"id": "a", "n": 1})
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == [{"id": "a", "n": 1}]


def test_second_append_of_a_key_writes_nothing(path: Path) -> None:
    file = IdempotentJsonlFile(path)
    file.append({"id": "a", "n": 1})
    before = path.read_bytes()
    assert not file.append({"id": "a", "n": 2})
    assert path.read_bytes() == before


def test_keys_survive_reopening(path: Path) -> None:
    IdempotentJsonlFile(path).append({"id": "a"})
    reopened = IdempotentJsonlFile(path)
    assert "a" in reopened
    assert not reopened.append({"id": "a"})
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1


def test_distinct_keys_are_all_written(path: Path) -> None:
    file = IdempotentJsonlFile(path)
    for key in ("a", "b", "c"):
        file.append({"id": key})
    assert [r["id"] for r in IdempotentJsonlFile(path).records()] == ["a", "b", "c"]


def test_custom_key_field_decides_identity(path: Path) -> None:
    file = IdempotentJsonlFile(path, key_field="case")
    assert file.append({"case": "c1", "id": "x"})
    assert file.append({"case": "c2", "id": "x"})
    assert not file.append({"case": "c1", "id": "y"})


def test_non_string_keys_are_compared_as_text(path: Path) -> None:
    IdempotentJsonlFile(path).append({"id": 7})
    assert not IdempotentJsonlFile(path).append({"id": "7"})


def test_torn_last_line_is_cut_off_on_open(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    IdempotentJsonlFile(path).append({"id": "a"})
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "b", "te')
    with caplog.at_level(logging.WARNING, logger="services.shared.jsonl"):
        reopened = IdempotentJsonlFile(path)
    assert "b" not in reopened
    assert path.read_text(encoding="utf-8") == '{"id": "a"}\n'
    assert "torn" in caplog.text


def test_key_of_a_torn_line_can_be_written_again(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "b"}', encoding="utf-8")  # complete JSON, but the newline never made it
    with caplog.at_level(logging.WARNING, logger="services.shared.jsonl"):
        file = IdempotentJsonlFile(path)
    assert file.append({"id": "b"})
    assert [r["id"] for r in file.records()] == ["b"]


def test_corrupt_complete_line_raises_naming_file_and_line(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "a"}\n\n{"id": \n{"id": "c"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3:")):
        IdempotentJsonlFile(path)


def test_line_without_the_key_field_raises_naming_file_and_line(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "a"}\n["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2:")):
        IdempotentJsonlFile(path)


def test_non_ascii_text_round_trips(path: Path) -> None:
    IdempotentJsonlFile(path).append({"id": "zh:1", "text": "退款还没到 — Возврат"})
    assert next(IdempotentJsonlFile(path).records())["text"] == "退款还没到 — Возврат"


def test_text_with_a_unicode_line_separator_survives_reopening(path: Path) -> None:
    IdempotentJsonlFile(path).append({"id": "a", "text": "first\u2028second"})
    assert "a" in IdempotentJsonlFile(path)
