"""An append-only JSON-lines file that writes each key at most once.

Used for the router's outbox and the notifier's file channel: at-least-once delivery upstream
becomes exactly-once lines here. Each line is written with one ``write`` and fsynced before
the caller acknowledges its message; a torn last line left by a crash is cut off on open.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

log = logging.getLogger(__name__)


class IdempotentJsonlFile:
    """Append ``record`` under ``key`` unless a line with that key is already in the file."""

    def __init__(self, path: Path, *, key_field: str = "id") -> None:
        self.path = path
        self._key_field = key_field
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._keys = self._load_keys()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def append(self, record: Mapping[str, Any]) -> bool:
        """Write ``record`` as one line; returns False (writing nothing) if its key is present."""
        key = str(record[self._key_field])
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            if key in self._keys:
                return False
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._keys.add(key)
            return True

    def records(self) -> Iterator[dict[str, Any]]:
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def _load_keys(self) -> set[str]:
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A crash mid-write left a partial line: its message was never acked, so it comes again.
            cut = data.rfind(b"\n") + 1
            log.warning("%s: dropping a torn last line (%d bytes)", self.path, len(data) - cut)
            with self.path.open("r+b") as handle:
                handle.truncate(cut)
            data = data[:cut]
        keys: set[str] = set()
        # split("\n"), not splitlines(): JSON may hold U+2028 or U+0085 raw, which splitlines() breaks on.
        for number, line in enumerate(data.decode("utf-8").split("\n"), start=1):
            if not line.strip():
                continue
            try:
                keys.add(str(json.loads(line)[self._key_field]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{self.path}:{number}: not a JSON object with {self._key_field!r}") from exc
        return keys
