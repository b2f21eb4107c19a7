"""Records in a JetStream KV bucket, changed only by compare-and-set, mirrored in memory.

Several replicas of a service may hold the same bucket. Every change reads the record, applies a
pure function and writes it back with ``update(last=revision)``; a replica that lost the race
reads again and re-applies, so no write is ever lost or overwritten. A KV watcher keeps an
in-memory mirror of every record (this replica's writes and the others'), which a scheduler
scans for due work without a round trip per record; a decision taken from the mirror is always
re-checked inside :meth:`KvState.change`, on the record as it is in KV.

How a record becomes bytes is the state's :class:`Codec`: records are protobuf messages
(:class:`ProtoCodec`, or :class:`MappedCodec` for a domain dataclass kept free of transport types).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from nats.js.errors import InvalidKeyError, KeyNotFoundError, KeyWrongLastSequenceError

from services.shared.errors import TransientError, map_exceptions
from services.shared.jetstream import NATS_FAILURES, ensure_bucket, provision

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

RecordT = TypeVar("RecordT")
MessageT = TypeVar("MessageT", bound=Message)
CAS_ATTEMPTS = 8
KV_DELETE_OPS = ("DEL", "PURGE")
# Every error a codec may raise for bytes it cannot read: the record is then left alone, never dropped.
UNREADABLE = (ValueError, TypeError, KeyError, DecodeError, json_format.ParseError)


class UnreadableRecordError(TransientError):
    """A stored record this version cannot decode (a newer version's, or damaged); it is left as it is.

    Transient: during a rolling upgrade the message that needed it is retried, usually by a newer
    replica; a damaged record ends in dead letters after ``max_deliver`` tries, as any failure does.
    """


class Codec(Protocol[RecordT]):
    """How one type of record is stored: ``decode(encode(r)) == r``."""

    def encode(self, record: RecordT) -> bytes: ...

    def decode(self, data: bytes) -> RecordT: ...


def _is_json(data: bytes) -> bool:
    # A protobuf message never starts with ``{`` (it would be field 15 as a group, which proto3 has not).
    return data[:1] == b"{"


class ProtoCodec(Generic[MessageT]):
    """Records that are protobuf messages, stored in the binary wire format.

    Values an earlier version wrote as JSON objects (whose keys are the message's field names) are
    still read, through protobuf's JSON mapping, after ``legacy`` reshaped the few values whose JSON
    form differs; the next change writes them back in binary.
    """

    def __init__(
        self, message_type: type[MessageT], *, legacy: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> None:
        self._type = message_type
        self._legacy = legacy

    def encode(self, record: MessageT) -> bytes:
        return record.SerializeToString(deterministic=True)

    def decode(self, data: bytes) -> MessageT:
        message = self._type()
        if _is_json(data):
            old = json.loads(data)
            json_format.ParseDict(self._legacy(old) if self._legacy else old, message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(data)
        return message


class MappedCodec(Generic[RecordT, MessageT]):
    """A domain record stored as its protobuf contract: the one place that maps one onto the other."""

    def __init__(
        self,
        message_type: type[MessageT],
        *,
        to_proto: Callable[[RecordT], MessageT],
        from_proto: Callable[[MessageT], RecordT],
        legacy: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._proto = ProtoCodec(message_type, legacy=legacy)
        self._to = to_proto
        self._from = from_proto

    def encode(self, record: RecordT) -> bytes:
        return self._proto.encode(self._to(record))

    def decode(self, data: bytes) -> RecordT:
        return self._from(self._proto.decode(data))


def kv_key(name: str) -> str:
    """A valid KV key for any string (ids carry ``:``, ``/`` and non-ASCII text)."""
    return hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


class KvState(Generic[RecordT]):
    """One bucket of records of one type, with CAS changes and a live mirror."""

    def __init__(
        self,
        bucket: KeyValue,
        *,
        name: str,
        codec: Codec[RecordT],
        key: Callable[[str], str] = kv_key,
    ) -> None:
        """Built directly, without :meth:`open`, the state has no mirror: ``get`` and ``change`` only.

        ``key`` turns a record's name into its KV key; names that are valid keys already can keep them.
        """
        self._bucket = bucket
        self._name = name
        self._key = key
        self._codec = codec
        self._mirror: dict[str, RecordT] = {}
        # Raw values the watcher delivered but nobody has read yet: a burst of writes is decoded once, on read.
        self._undecoded: dict[str, bytes] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        bucket: str,
        *,
        codec: Codec[RecordT],
        replicas: int = 1,
        ttl_s: float | None = None,
        key: Callable[[str], str] = kv_key,
        mirror: bool = True,
    ) -> KvState[RecordT]:
        """Bind (or create) ``bucket``; with ``ttl_s``, records nobody changed for that long expire.

        ``mirror=False`` suits buckets too large to hold in memory: ``get``, ``change`` and ``newest`` only.
        """
        kv = await ensure_bucket(js, bucket, replicas=replicas, ttl_s=ttl_s)
        state = cls(kv, name=bucket, codec=codec, key=key)
        if mirror:
            await state._start_mirror()
        return state

    async def _start_mirror(self) -> None:
        watcher = await provision(f"watch {self._name}", self._bucket.watchall)
        self._watch_task = asyncio.create_task(self._follow(watcher), name=f"kv-mirror-{self._name}")
        await self._loaded.wait()

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:
                    # The watcher's marker: every record that existed at the start has arrived.
                    self._loaded.set()
                    continue
                if entry.operation in KV_DELETE_OPS or not entry.value:
                    self._mirror.pop(entry.key, None)
                    self._undecoded.pop(entry.key, None)
                else:
                    self._undecoded[entry.key] = entry.value
        finally:
            self._loaded.set()
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _decode_pending(self) -> None:
        pending, self._undecoded = self._undecoded, {}
        for key, value in pending.items():
            try:
                self._mirror[key] = self._codec.decode(value)
            except UNREADABLE as exc:
                # A record this version cannot read is left in KV for a newer one, never dropped.
                log.error("unreadable record in %s (key %s): %s", self._name, key, exc)

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task

    def records(self) -> list[RecordT]:
        """Every record as the mirror last saw it (possibly a moment behind KV)."""
        self._decode_pending()
        return list(self._mirror.values())

    def peek(self, name: str) -> RecordT | None:
        self._decode_pending()
        return self._mirror.get(self._key(name))

    async def get(self, name: str) -> tuple[RecordT, int] | None:
        """The record and its revision, or None when there is none (or ``name`` cannot be a key)."""
        with map_exceptions(NATS_FAILURES, f"cannot read {name} from {self._name}"):
            try:
                entry = await self._bucket.get(self._key(name))
            except (KeyNotFoundError, InvalidKeyError):
                return None
        try:
            return self._codec.decode(entry.value or b""), int(entry.revision or 0)
        except UNREADABLE as exc:
            # Left in KV for a version that can read it; to this one it is a record it must not touch.
            raise UnreadableRecordError(f"{name} in {self._name} cannot be read: {exc}") from exc

    async def newest(self, *, before: int = 0) -> list[tuple[str, int]]:
        """Every key with its revision, most recently changed first; with ``before``, only older ones.

        Reads key metadata only (no values), so a caller can page through a large bucket and fetch
        just the records of one page.
        """
        with map_exceptions(NATS_FAILURES, f"cannot list {self._name}"):
            watcher = await self._bucket.watchall(ignore_deletes=True, meta_only=True)
        latest: dict[str, int] = {}
        try:
            async for entry in watcher:
                if entry is None:
                    break
                # A key written while the listing runs may arrive twice: its latest revision counts.
                if entry.operation in KV_DELETE_OPS:
                    latest.pop(entry.key, None)
                else:
                    latest[entry.key] = max(latest.get(entry.key, 0), int(entry.revision or 0))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        found = [(key, revision) for key, revision in latest.items() if not before or revision < before]
        found.sort(key=lambda item: item[1], reverse=True)
        return found

    async def change(self, name: str, change: Callable[[RecordT | None], RecordT | None]) -> RecordT | None:
        """Apply ``change`` to the current record (None when absent) and write its result with CAS.

        ``change`` must be pure: it may run several times. Returning the record unchanged (the same
        object) or None writes nothing.
        """
        key = self._key(name)
        for _ in range(CAS_ATTEMPTS):
            found = await self.get(name)
            current, revision = found if found is not None else (None, 0)
            updated = change(current)
            if updated is None or updated is current:
                return current
            payload = self._codec.encode(updated)
            with map_exceptions(NATS_FAILURES, f"cannot write {name} to {self._name}"):
                try:
                    if revision:
                        await self._bucket.update(key, payload, last=revision)
                    else:
                        await self._bucket.create(key, payload)
                except KeyWrongLastSequenceError:
                    continue
            if self._watch_task is not None:
                self._mirror[key] = updated
                # The watcher will deliver this write too; what it holds for the key is older than ``updated``.
                self._undecoded.pop(key, None)
            return updated
        raise TransientError(f"{name} in {self._name} kept changing under {CAS_ATTEMPTS} attempts")

    async def create_or_get(self, name: str, record: RecordT) -> tuple[RecordT, bool]:
        """Store ``record`` if ``name`` has none (True), else return the stored one (False).

        The same as ``change(name, lambda found: found or record)``, in one round trip when the name is new.
        """
        key = self._key(name)
        with map_exceptions(NATS_FAILURES, f"cannot write {name} to {self._name}"):
            try:
                await self._bucket.create(key, self._codec.encode(record))
            except KeyWrongLastSequenceError:
                found = await self.get(name)
                if found is not None:
                    return found[0], False
                # Deleted between the two calls: the careful path decides.
                stored = await self.change(name, lambda current: current or record)
                return (stored, stored is record) if stored is not None else (record, True)
        if self._watch_task is not None:
            self._mirror[key] = record
            self._undecoded.pop(key, None)
        return record, True

    async def delete(self, name: str) -> None:
        """Forget ``name`` (the watcher removes it from every replica's mirror)."""
        key = self._key(name)
        with map_exceptions(NATS_FAILURES, f"cannot delete {name} from {self._name}"):
            await self._bucket.delete(key)
        self._mirror.pop(key, None)
        self._undecoded.pop(key, None)
