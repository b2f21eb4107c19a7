"""Every metric Clamor exports: one table, so code, alert rules, dashboard and docs agree.

OpenTelemetry semantic-convention names where one exists (messaging, RPC, HTTP client),
``clamor.*`` names where none does. A service records only names listed here
(:class:`services.shared.metrics.Metrics` refuses others), and the tests check that every series
the alert rules and the dashboard query is one of these.

Prometheus sees each name with dots as underscores, the unit as a suffix (``s`` → ``_seconds``;
curly-brace units such as ``{message}`` add nothing) and ``_total`` after a counter's name:
``messaging.client.consumed.messages`` is ``messaging_client_consumed_messages_total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"  # monotonic sum
    UP_DOWN = "up_down"  # a sum that goes both ways (queue depth held in process)
    HISTOGRAM = "histogram"
    GAUGE = "gauge"  # observed when collected (lag, depth, age)


# Seconds-valued histograms: the semantic conventions' advice for durations, up to a minute for
# CRM calls and model batches on a slow CPU.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)
# Time to acknowledge a page: minutes to hours.
ACK_BUCKETS_S = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    unit: str
    description: str
    # The attribute keys it carries; recording with a key not listed is refused.
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    @property
    def prometheus_name(self) -> str:
        """The series name the Prometheus exporter gives it (histograms add _bucket/_sum/_count)."""
        base = self.name.replace(".", "_")
        suffix = {"s": "_seconds", "ms": "_milliseconds", "By": "_bytes", "1": "_ratio"}.get(self.unit, "")
        if suffix and not base.endswith(suffix):
            base += suffix
        return base + "_total" if self.kind is Kind.COUNTER else base


# Attribute keys, semantic-convention names first.
SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
CONSUMER_GROUP = "messaging.consumer.group.name"
OPERATION = "messaging.operation.name"
ERROR_TYPE = "error.type"
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
GRPC_STATUS = "rpc.grpc.status_code"
HTTP_METHOD = "http.request.method"
HTTP_STATUS = "http.response.status_code"
SERVER_ADDRESS = "server.address"
STAGE = "clamor.stage"
SOURCE = "clamor.source"
SOURCE_KIND = "clamor.source.kind"
LABEL = "clamor.label"
LANGUAGE = "clamor.language"
TEAM = "clamor.team"
POLICY = "clamor.sla.policy"
DESTINATION_NAME = "clamor.destination"
OUTCOME = "clamor.outcome"
CHANNEL = "clamor.channel"
CHANNEL_KIND = "clamor.channel.kind"
TOPIC_KIND = "clamor.topic.kind"

_MESSAGING = (SYSTEM, DESTINATION, CONSUMER_GROUP, OPERATION, ERROR_TYPE)

CATALOGUE: tuple[MetricSpec, ...] = (
    # --- every consuming stage (services/shared/pull_consumer.py) ---------------------------
    MetricSpec(
        "messaging.client.consumed.messages",
        Kind.COUNTER,
        "{message}",
        "Messages a stage finished handling; error.type is set on those that failed (retried).",
        _MESSAGING,
    ),
    MetricSpec(
        "messaging.process.duration",
        Kind.HISTOGRAM,
        "s",
        "Time a stage spent handling one batch of messages, per message.",
        _MESSAGING,
        DURATION_BUCKETS_S,
    ),
    MetricSpec(
        "clamor.messages.dead_lettered",
        Kind.COUNTER,
        "{message}",
        "Messages a stage gave up on and moved to the dead-letter stream, by error class.",
        (STAGE, ERROR_TYPE),
    ),
    MetricSpec(
        "clamor.jetstream.consumer.pending",
        Kind.GAUGE,
        "{message}",
        "Messages in the stream that the stage's durable consumer has not yet been given (lag).",
        (STAGE, DESTINATION),
    ),
    MetricSpec(
        "clamor.jetstream.consumer.ack_pending",
        Kind.GAUGE,
        "{message}",
        "Messages given to the stage and not yet acknowledged.",
        (STAGE, DESTINATION),
    ),
    MetricSpec(
        "clamor.dead_letters.depth",
        Kind.GAUGE,
        "{message}",
        "Messages held in the dead-letter stream for the stage.",
        (STAGE,),
    ),
    MetricSpec(
        "messaging.client.sent.messages",
        Kind.COUNTER,
        "{message}",
        "Messages published to JetStream, by subject; error.type on a publish that failed.",
        (SYSTEM, DESTINATION, OPERATION, ERROR_TYPE),
    ),
    # --- gRPC servers and outbound HTTP --------------------------------------------------------
    MetricSpec(
        "rpc.server.call.duration",
        Kind.HISTOGRAM,
        "s",
        "Time to answer a gRPC call (health, reflection and status polls excluded).",
        (RPC_SYSTEM, RPC_SERVICE, RPC_METHOD, GRPC_STATUS),
        DURATION_BUCKETS_S,
    ),
    MetricSpec(
        "http.client.request.duration",
        Kind.HISTOGRAM,
        "s",
        "Outbound HTTP requests (sources, CRMs, channels) by host and status; error.type when none came.",
        (HTTP_METHOD, SERVER_ADDRESS, HTTP_STATUS, ERROR_TYPE),
        DURATION_BUCKETS_S,
    ),
    # --- listener --------------------------------------------------------------------------------
    MetricSpec("clamor.listener.polls", Kind.COUNTER, "{poll}", "Polls of a source.", (SOURCE, SOURCE_KIND)),
    MetricSpec(
        "clamor.listener.poll.errors",
        Kind.COUNTER,
        "{poll}",
        "Polls that failed, by error class.",
        (SOURCE, SOURCE_KIND, ERROR_TYPE),
    ),
    MetricSpec("clamor.listener.posts.seen", Kind.COUNTER, "{post}", "Posts a source returned.", (SOURCE,)),
    MetricSpec(
        "clamor.listener.posts.new",
        Kind.COUNTER,
        "{post}",
        "Posts seen for the first time and published as mentions.",
        (SOURCE,),
    ),
    MetricSpec(
        "clamor.listener.newest_post.age",
        Kind.GAUGE,
        "s",
        "Seconds since the newest post a source has published (silence).",
        (SOURCE,),
    ),
    MetricSpec(
        "clamor.listener.rate_limit.waits",
        Kind.COUNTER,
        "{wait}",
        "Times a source waited for its rate limit or a Retry-After.",
        (SOURCE,),
    ),
    # --- triage ----------------------------------------------------------------------------------
    MetricSpec(
        "clamor.triage.verdicts",
        Kind.COUNTER,
        "{post}",
        "Verdicts by label and language.",
        (LABEL, LANGUAGE),
    ),
    MetricSpec(
        "clamor.triage.batch.size",
        Kind.HISTOGRAM,
        "{post}",
        "Posts per triage batch.",
        (),
        BATCH_BUCKETS,
    ),
    MetricSpec(
        "clamor.triage.model.duration",
        Kind.HISTOGRAM,
        "s",
        "Time the encoder and heads took for one batch.",
        (),
        DURATION_BUCKETS_S,
    ),
    MetricSpec(
        "clamor.triage.encoder.posts",
        Kind.COUNTER,
        "{post}",
        "Posts that reached the encoder (the rest were decided before it: own posts, empty text).",
        (),
    ),
    # --- router ----------------------------------------------------------------------------------
    MetricSpec("clamor.router.cases.opened", Kind.COUNTER, "{case}", "Cases opened.", (TEAM,)),
    MetricSpec(
        "clamor.router.cases.grouped",
        Kind.COUNTER,
        "{post}",
        "Complaints added to an open case instead of opening one.",
        (TEAM,),
    ),
    MetricSpec("clamor.router.cases.escalated", Kind.COUNTER, "{case}", "Cases escalated.", (TEAM,)),
    MetricSpec(
        "clamor.router.sla.warnings",
        Kind.COUNTER,
        "{case}",
        "SLA clocks that reached their warning.",
        (TEAM, POLICY),
    ),
    MetricSpec(
        "clamor.router.sla.breaches",
        Kind.COUNTER,
        "{case}",
        "SLA clocks that ran out (the case escalates).",
        (TEAM, POLICY),
    ),
    MetricSpec(
        "clamor.router.crm.requests",
        Kind.COUNTER,
        "{request}",
        "Deliveries to a CRM by destination and outcome (delivered, retried, failed).",
        (DESTINATION_NAME, OUTCOME),
    ),
    MetricSpec(
        "clamor.router.crm.duration",
        Kind.HISTOGRAM,
        "s",
        "Time one delivery to a CRM took, by destination and outcome.",
        (DESTINATION_NAME, OUTCOME),
        DURATION_BUCKETS_S,
    ),
    MetricSpec(
        "clamor.router.dead_letters",
        Kind.COUNTER,
        "{case}",
        "Deliveries given up on and dead-lettered, by destination.",
        (DESTINATION_NAME,),
    ),
    # --- reputation -----------------------------------------------------------------------------
    MetricSpec(
        "clamor.reputation.alerts",
        Kind.COUNTER,
        "{alert}",
        "Reputation alerts raised (a surge of complaints about a topic).",
        (TOPIC_KIND,),
    ),
    # --- notifier --------------------------------------------------------------------------------
    MetricSpec(
        "clamor.notifier.notifications",
        Kind.COUNTER,
        "{notification}",
        "Notifications by channel and outcome (sent, failed).",
        (CHANNEL, CHANNEL_KIND, OUTCOME),
    ),
    MetricSpec(
        "clamor.notifier.queue.depth",
        Kind.GAUGE,
        "{notification}",
        "Notifications waiting in groups, quiet hours or throttles.",
        (),
    ),
    MetricSpec(
        "clamor.notifier.rate_limit.pauses",
        Kind.COUNTER,
        "{pause}",
        "Times a channel paused for its rate limit.",
        (CHANNEL,),
    ),
    MetricSpec("clamor.notifier.pages.acknowledged", Kind.COUNTER, "{page}", "Pages acknowledged.", (CHANNEL,)),
    MetricSpec(
        "clamor.notifier.pages.reescalated",
        Kind.COUNTER,
        "{page}",
        "Pages escalated again because nobody acknowledged them in time.",
        (),
    ),
    MetricSpec(
        "clamor.notifier.ack.duration",
        Kind.HISTOGRAM,
        "s",
        "Time from a page being sent to its acknowledgement.",
        (),
        ACK_BUCKETS_S,
    ),
)

BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in CATALOGUE}
