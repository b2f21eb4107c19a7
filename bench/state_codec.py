"""State records: stored size and encode/decode time per record, protobuf against JSON, on this machine.

For each kind of record kept in JetStream KV, a typical one is built (a case of three posts and
eight history entries; a notifier group holding one escalation; an escalation page; an SLA clock;
a delivery ticket) and stored with the codec the service uses (protobuf binary) and, for
comparison, as JSON through protobuf's JSON mapping of the same contract (what a JSON codec would
store, and what the fallback for records of earlier versions reads). Times are the median of five
runs of ``--rounds`` encodes or decodes, in microseconds per record. The last line is the
headline: the case, whose record is the largest and the most often changed.

    python bench/state_codec.py --rounds 20000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message as ProtoMessage

from clamor.v1 import case_pb2, mention_pb2, triage_pb2
from clamor.v1.router_state_pb2 import DeliveryTicket, SlaClockRecord
from services.notifier.grouping import Claim, Group, Item, fingerprint
from services.notifier.message import Message
from services.notifier.pages import Page
from services.notifier.records import GROUP_CODEC, PAGE_CODEC, group_to_proto, page_to_proto
from services.router.delivery.worker import TICKET_CODEC, TicketRecord
from services.router.domain import stamp
from services.router.records import CASE_CODEC
from services.router.sla_clock import SLA_RECORD_CODEC, SlaRecord
from services.shared.kv_state import Codec

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
POST = (
    "@AcmeBank charged twice for one order and support won't answer. Third email today, still nothing. "
    "If this isn't fixed by Friday I'm going to the ombudsman and telling everyone I know."
)


def typical_case() -> case_pb2.Case:
    mentions = []
    for n in range(3):
        mention = mention_pb2.Mention(
            id=f"x:18{n}4729",
            platform="x",
            watch="acme",
            text=POST,
            url=f"https://x.com/ana_b/status/18{n}4729",
            author=mention_pb2.Author(handle="ana_b", display_name="Ana B", followers=1840),
            thread_id="18047",
            language="en",
        )
        mention.created_at.CopyFrom(stamp(T0 + timedelta(minutes=n)))
        result = triage_pb2.TriageResult(
            verdict=triage_pb2.VERDICT_COMPLAINT,
            complaint_score=0.97,
            severity=triage_pb2.SEVERITY_HIGH,
            category="billing",
            language="en",
            risk_flags=[triage_pb2.RISK_FLAG_REGULATOR],
            model_version="e5-small/2026-11",
            reasons=[triage_pb2.Reason(rule="regulator", matched="ombudsman")],
        )
        mentions.append(triage_pb2.TriagedMention(mention=mention, result=result))
    kinds = [
        (case_pb2.CASE_EVENT_KIND_CREATED, "from mention x:1804729, routed by billing", "mention_id", "x:1804729"),
        (case_pb2.CASE_EVENT_KIND_ROUTED, "outbox, zendesk", "", ""),
        (
            case_pb2.CASE_EVENT_KIND_ESCALATED,
            "level 1 to legal: severity HIGH [c_1:now:legal]",
            "escalation_id",
            "c_1:now:legal",
        ),
        (case_pb2.CASE_EVENT_KIND_POST_ADDED, "mention x:1814729", "mention_id", "x:1814729"),
        (case_pb2.CASE_EVENT_KIND_POST_ADDED, "mention x:1824729", "mention_id", "x:1824729"),
        (case_pb2.CASE_EVENT_KIND_BRAND_REPLY, '@AcmeHelp: "So sorry, DM us" [x:1834729]', "mention_id", "x:1834729"),
        (
            case_pb2.CASE_EVENT_KIND_SLA_WARNING,
            "level 0 to care: first response due soon [c_1:sla:w:care]",
            "escalation_id",
            "c_1:sla:w:care",
        ),
        (
            case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE,
            "acknowledge by dana via link [c_1:acknowledge:r1]",
            "action_id",
            "c_1:acknowledge:r1",
        ),
    ]
    history = []
    for n, (kind, detail, ref_field, ref_id) in enumerate(kinds):
        ref = case_pb2.CaseEventRef(**{ref_field: ref_id}) if ref_field else None
        history.append(case_pb2.CaseEvent(at=stamp(T0 + timedelta(minutes=n)), event_kind=kind, detail=detail, ref=ref))
    return case_pb2.Case(
        id="c_5f0e6a1b2c3d4e5f6071",
        state=case_pb2.CASE_STATE_ACKNOWLEDGED,
        severity=triage_pb2.SEVERITY_HIGH,
        category="billing",
        risk_flags=[triage_pb2.RISK_FLAG_REGULATOR],
        team="care",
        escalation_level=1,
        mentions=mentions,
        history=history,
        created_at=stamp(T0),
        updated_at=stamp(T0 + timedelta(minutes=8)),
        destinations=["outbox", "zendesk"],
        priority_level=case_pb2.CASE_PRIORITY_HIGH,
        sla_policy="standard",
        matched_rules=["billing", "legal"],
        owner="dana",
        acknowledged_at=stamp(T0 + timedelta(minutes=8)),
        group_keys=["thread:x:18047"],
    )


def typical_message() -> Message:
    return Message(
        id="c_1:now:legal",
        kind="escalation",
        title="[HIGH] case c_1 escalated to legal (level 1)",
        severity="HIGH",
        risk_flags=("regulator",),
        reason="severity HIGH",
        post_text=POST,
        author_handle="ana_b",
        author_followers=1840,
        platform="x",
        post_url="https://x.com/ana_b/status/1804729",
        case_id="c_1",
        team="legal",
        level=1,
        sla_due=T0 + timedelta(minutes=10),
        dedup_key="clamor-case-c_1",
        mention_id="x:1804729",
        raised_at=T0,
    )


def typical_group() -> Group:
    message = typical_message()
    item = Item(message.id, fingerprint(message), message, T0, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    return Group(
        id="g_0123456789abcdef01234567",
        channel="slack-legal",
        key="team=legal,severity=HIGH",
        pending=[item],
        sent={"c_0:now:legal": ("f" * 32, T0 - timedelta(minutes=3))},
        sequence=4,
        first_pending_at=T0,
        claim=Claim("notifier-7f9c", T0 + timedelta(seconds=180)),
    )


def per_record_us(work: Callable[[], object], rounds: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            work()
        runs.append((time.perf_counter() - start) / rounds * 1e6)
    return statistics.median(runs)


class JsonOfContract:
    """JSON through protobuf's JSON mapping of a message's contract (what a JSON codec would store)."""

    def __init__(self, kind: type[ProtoMessage]) -> None:
        self._kind = kind

    def encode(self, message: ProtoMessage) -> bytes:
        data = json_format.MessageToDict(message, preserving_proto_field_name=True)
        return json.dumps(data, ensure_ascii=False).encode()

    def decode(self, data: bytes) -> ProtoMessage:
        return json_format.ParseDict(json.loads(data), self._kind())


def as_json(proto: ProtoMessage) -> JsonOfContract:
    """JSON through protobuf's JSON mapping of ``proto``'s contract."""
    return JsonOfContract(type(proto))


def measure(name: str, record: Any, codec: Codec[Any], proto: ProtoMessage, rounds: int) -> str:
    json_codec = as_json(proto)
    binary, text = codec.encode(record), json_codec.encode(proto)
    figures = (
        per_record_us(lambda: codec.encode(record), rounds),
        per_record_us(lambda: codec.decode(binary), rounds),
        per_record_us(lambda: json_codec.encode(proto), rounds),
        per_record_us(lambda: json_codec.decode(text), rounds),
    )
    return (
        f"{name:<13} protobuf {len(binary):>5} B, encode {figures[0]:6.1f} µs, decode {figures[1]:6.1f} µs | "
        f"JSON {len(text):>5} B, encode {figures[2]:6.1f} µs, decode {figures[3]:6.1f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20_000)
    rounds = parser.parse_args().rounds
    case = typical_case()
    group = typical_group()
    page = Page(case_id="c_1", policy="legal", message=typical_message(), step_started_at=T0, step=1)
    sla = SlaRecord(case_id="c_1", policy="standard", opened_at=T0, team="care", fired=("first_response:warning",))
    ticket = TicketRecord(remote_id="4711", url="https://acme.zendesk.com/agent/tickets/4711", synced=7)
    lines = [
        measure("sla clock", sla, SLA_RECORD_CODEC, SlaClockRecord.FromString(SLA_RECORD_CODEC.encode(sla)), rounds),
        measure("ticket", ticket, TICKET_CODEC, DeliveryTicket.FromString(TICKET_CODEC.encode(ticket)), rounds),
        measure("page", page, PAGE_CODEC, page_to_proto(page), rounds),
        measure("group", group, GROUP_CODEC, group_to_proto(group), rounds),
        measure("case", case, CASE_CODEC, case, rounds),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
