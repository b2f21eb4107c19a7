"""Every stream, subject, durable and KV bucket name in one place.

Producers and consumers import names from here only, so a rename is one edit and a typo is an
import error rather than a silently empty consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_S = 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream Clamor owns. ``max_age_s`` bounds how long personal data is kept."""

    name: str
    subjects: tuple[str, ...]
    max_age_s: float
    duplicate_window_s: float = 20 * 60.0
    # No fsync setting here: nats-server 2.15 fsyncs per server (jetstream { sync_interval }), not
    # per stream; a stream's persist_mode can only weaken it ("async"). See NatsSettings.sync.


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer, with every limit set and its dead-letter subject."""

    stream: str
    durable: str
    filter_subject: str
    dead_letter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 6
    # No JetStream BackOff list: nats-server adds its entries to every explicit nak(delay) after the
    # first (measured: d, then d+30 s, d+30 s, d+270 s), which would override the handlers' own delays.
    # A crashed process's work comes back after ack_wait; a slow batch is kept alive by in_progress.
    backoff_s: tuple[float, ...] = ()
    # Delays for an explicit nak after a transient failure, indexed by attempt.
    nak_delays_s: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0, 300.0)
    max_ack_pending: int = 1000


def mention_subject(platform: str) -> str:
    return f"clamor.mention.{platform}"


def triaged_subject(verdict: str) -> str:
    return f"clamor.triaged.{verdict}"


def escalation_subject(team: str) -> str:
    return f"clamor.escalation.{team}"


def routed_subject(destination: str) -> str:
    return f"clamor.routed.{destination}"


def alert_subject(kind: str) -> str:
    return f"clamor.alert.{kind}"


def case_action_subject(kind: str) -> str:
    """``kind`` is the action's name in lower case: acknowledge, resolve, not_a_complaint."""
    return f"clamor.case.{kind}"


def notification_subject(channel: str) -> str:
    return f"clamor.notification.{channel}"


def delivery_subject(destination: str) -> str:
    """The router's own work queue: one CaseDelivery per change to send to ``destination``."""
    return f"clamor.delivery.{destination}"


SOURCE_HEALTH_ALERTS = alert_subject("source_health")


TRIAGED_COMPLAINT = triaged_subject("complaint")
TRIAGED_NOISE = triaged_subject("noise")

MENTIONS = StreamSpec("MENTIONS", ("clamor.mention.>",), max_age_s=14 * DAY_S)
TRIAGED = StreamSpec("TRIAGED", ("clamor.triaged.>",), max_age_s=90 * DAY_S)
ROUTED = StreamSpec("ROUTED", ("clamor.routed.>",), max_age_s=30 * DAY_S)
ESCALATIONS = StreamSpec("ESCALATIONS", ("clamor.escalation.>",), max_age_s=30 * DAY_S)
ALERTS = StreamSpec("ALERTS", ("clamor.alert.>",), max_age_s=30 * DAY_S)
DEAD_LETTERS = StreamSpec("DEAD_LETTERS", ("clamor.dlq.>",), max_age_s=30 * DAY_S)
# Acknowledgements, resolutions and "not a complaint" answers, from people and CRMs.
CASE_ACTIONS = StreamSpec("CASE_ACTIONS", ("clamor.case.>",), max_age_s=90 * DAY_S)
# The notification log: what was sent to whom, when, and with what result.
NOTIFICATIONS = StreamSpec("NOTIFICATIONS", ("clamor.notification.>",), max_age_s=30 * DAY_S)
# The router's deliveries to CRMs, waiting or retrying; a delivery gives up into DEAD_LETTERS.
DELIVERIES = StreamSpec("DELIVERIES", ("clamor.delivery.>",), max_age_s=30 * DAY_S)

ALL_STREAMS: tuple[StreamSpec, ...] = (
    MENTIONS,
    TRIAGED,
    ROUTED,
    ESCALATIONS,
    ALERTS,
    DEAD_LETTERS,
    CASE_ACTIONS,
    NOTIFICATIONS,
    DELIVERIES,
)


def dead_letter_subject(stage: str) -> str:
    """One dead-letter subject per stage, all kept in the DEAD_LETTERS stream."""
    return f"clamor.dlq.{stage}"


TRIAGE_CONSUMER = ConsumerSpec(
    stream=MENTIONS.name,
    durable="triage",
    filter_subject="clamor.mention.>",
    dead_letter_subject=dead_letter_subject("triage"),
)
ROUTER_CONSUMER = ConsumerSpec(
    stream=TRIAGED.name,
    durable="router",
    # Noise too: a rule may route it (a viral post by a big account that is not yet a complaint).
    filter_subject="clamor.triaged.>",
    dead_letter_subject=dead_letter_subject("router"),
)
# Deliveries retry until their destination's retry period is over (the handler decides, by time),
# so the delivery count never ends them; each retry's delay is the handler's jittered backoff.
ROUTER_DELIVERY_CONSUMER = ConsumerSpec(
    stream=DELIVERIES.name,
    durable="router-delivery",
    filter_subject="clamor.delivery.>",
    dead_letter_subject=dead_letter_subject("delivery"),
    max_deliver=100_000,
    nak_delays_s=(0.2,),
)
NOTIFIER_ESCALATIONS_CONSUMER = ConsumerSpec(
    stream=ESCALATIONS.name,
    durable="notifier",
    filter_subject="clamor.escalation.>",
    dead_letter_subject=dead_letter_subject("notifier"),
)
NOTIFIER_ALERTS_CONSUMER = ConsumerSpec(
    stream=ALERTS.name,
    durable="notifier-alerts",
    filter_subject="clamor.alert.>",
    dead_letter_subject=dead_letter_subject("notifier"),
)

# The reputation service counts every triaged post. Counting is exact only in stream order (each
# hourly record skips posts at or below the last sequence it counted): a batch that comes before the
# posts ahead of it are counted (another replica holds them, or they were handed back) is handed back
# at once and comes again a moment later. Its failures are that, or KV and NATS away for now, so it
# retries until they pass rather than dead-lettering posts the counters would miss until a rebuild.
REPUTATION_BATCH = 500
REPUTATION_CONSUMER = ConsumerSpec(
    stream=TRIAGED.name,
    durable="reputation",
    filter_subject="clamor.triaged.>",
    dead_letter_subject=dead_letter_subject("reputation"),
    max_deliver=100_000,
    nak_delays_s=(0.02, 0.05, 0.1, 0.5),
    max_ack_pending=REPUTATION_BATCH,
)

# The router and the notifier each read every case action, through their own durables.
ROUTER_ACTIONS_CONSUMER = ConsumerSpec(
    stream=CASE_ACTIONS.name,
    durable="router-actions",
    filter_subject="clamor.case.>",
    dead_letter_subject=dead_letter_subject("router"),
)
NOTIFIER_ACTIONS_CONSUMER = ConsumerSpec(
    stream=CASE_ACTIONS.name,
    durable="notifier-actions",
    filter_subject="clamor.case.>",
    dead_letter_subject=dead_letter_subject("notifier"),
)

ALL_CONSUMERS: tuple[ConsumerSpec, ...] = (
    TRIAGE_CONSUMER,
    ROUTER_CONSUMER,
    NOTIFIER_ESCALATIONS_CONSUMER,
    NOTIFIER_ALERTS_CONSUMER,
    ROUTER_ACTIONS_CONSUMER,
    NOTIFIER_ACTIONS_CONSUMER,
    ROUTER_DELIVERY_CONSUMER,
    REPUTATION_CONSUMER,
)

# JetStream KV buckets (state lives here: no second database).
LISTENER_STATE_BUCKET = "listener_state"
LISTENER_SOURCES_BUCKET = "listener_sources"
# Which listener replica polls each source ("source.<name>"), and each replica's presence ("replica.<id>").
LISTENER_LEASES_BUCKET = "listener_leases"
CASES_BUCKET = "cases"
# Group key (author on a watch, thread) → the open case it belongs to; entries expire with the window.
CASE_KEYS_BUCKET = "router_case_keys"
# "<destination>.<case>" → the remote ticket and how much of the case's history it has seen.
ROUTER_TICKETS_BUCKET = "router_tickets"
# One SLA clock per open case: its policy, start and the steps already fired.
ROUTER_SLA_BUCKET = "router_sla"
# Destinations switched off by a 410 Gone, until the config is fixed and they are re-enabled.
ROUTER_DESTINATIONS_BUCKET = "router_destinations"
# Mention → the case that holds it (MentionCase), written by the router for every post it places
# and read by the reputation service to link an alert's sample posts to their cases.
MENTION_CASES_BUCKET = "router_mention_cases"
# The reputation service's buckets keep the names they had while the router counted trends, so
# their data stays where it is.
# Hourly volume records per verdict, watch and hour, the watches seen, and the counter's stream cursor.
REPUTATION_COUNTERS_BUCKET = "router_counters"
# One spike detector state per key (a watch, a watch's category, a watch's keyword).
REPUTATION_SPIKES_BUCKET = "router_spikes"
# Reputation alerts in their latest revision, for ListAlerts, trends and the dashboard.
REPUTATION_ALERTS_BUCKET = "router_alerts"
NOTIFIER_DELIVERIES_BUCKET = "notifier_deliveries"
NOTIFIER_GROUPS_BUCKET = "notifier_groups"
NOTIFIER_PAGES_BUCKET = "notifier_pages"

# Message headers Clamor sets beside Nats-Msg-Id and traceparent.
MSG_ID_HEADER = "Nats-Msg-Id"
MENTION_ID_HEADER = "Clamor-Mention-Id"
DLQ_ERROR_HEADER = "Clamor-Dlq-Error"
DLQ_SUBJECT_HEADER = "Clamor-Dlq-Subject"
DLQ_STREAM_SEQ_HEADER = "Clamor-Dlq-Stream-Seq"
DLQ_DELIVERIES_HEADER = "Clamor-Dlq-Deliveries"
