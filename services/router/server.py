"""The router's gRPC API: cases, rules (validate, reload), answers about cases, dead letters."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from clamor.v1 import case_pb2, router_service_pb2, router_service_pb2_grpc
from services.router.config import OUTBOX, RouterConfig
from services.router.errors import PageTokenError
from services.router.rules import RuleProblem, check_references, count_rules, parse_rules
from services.shared.clock import Clock, system_clock
from services.shared.config import load_config
from services.shared.errors import ConfigError, TransientError
from services.shared.paging import InvalidPageError, decode_sequence, encode_token, page_size

if TYPE_CHECKING:
    from pathlib import Path

    from services.router.clients import CaseStore
    from services.router.config import RouterSettings
    from services.router.consumer import RulesHolder
    from services.router.dead_letters import DeadLetters
    from services.shared.case_actions import CaseActions

log = logging.getLogger(__name__)

SERVICE_NAME = router_service_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_ACTOR_CHARS = 100
# A note is kept in the case history and goes into every CRM's comment.
MAX_NOTE_CHARS = 1000
Context = grpc.aio.ServicerContext[object, object]


@dataclass
class RouterParts:
    cases: CaseStore
    actions: CaseActions
    dead_letters: DeadLetters


async def _limit(requested: int, context: Context) -> int:
    if requested < 0:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit must be 0 (the default) or more, not {requested}")
    return min(requested or DEFAULT_LIMIT, MAX_LIMIT)


def _problems(problems: list[RuleProblem]) -> list[router_service_pb2.RuleError]:
    return [router_service_pb2.RuleError(rule=p.rule, field=p.field, message=p.message, line=p.line) for p in problems]


class RouterServicer(router_service_pb2_grpc.RouterServiceServicer):
    """Serves from the start (health must answer), and works once :meth:`attach` gave it NATS."""

    def __init__(
        self, settings: RouterSettings, rules: RulesHolder, config_path: Path | None, *, clock: Clock = system_clock
    ) -> None:
        self._settings = settings
        self._rules = rules
        self._config_path = config_path
        self._clock = clock
        self._parts: RouterParts | None = None

    def attach(self, parts: RouterParts) -> None:
        self._parts = parts

    async def _ready(self, context: Context) -> RouterParts:
        if self._parts is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the router is still connecting to NATS")
        assert self._parts is not None
        return self._parts

    async def ListCases(
        self, request: router_service_pb2.ListCasesRequest, context: Context
    ) -> router_service_pb2.ListCasesResponse:
        parts = await self._ready(context)
        size = await _limit(request.page_size or request.limit, context)
        try:
            cases, next_token = await parts.cases.page(size, request.page_token)
        except PageTokenError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from exc
        return router_service_pb2.ListCasesResponse(cases=cases, next_page_token=next_token)

    async def GetCase(
        self, request: router_service_pb2.GetCaseRequest, context: Context
    ) -> router_service_pb2.GetCaseResponse:
        parts = await self._ready(context)
        found = await parts.cases.get(request.case_id) if request.case_id else None
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no case {request.case_id!r}")
            raise AssertionError("unreachable")
        return router_service_pb2.GetCaseResponse(case=found[0])

    def _references(self, rules: list[Any]) -> list[RuleProblem]:
        known = {OUTBOX, *(d.name for d in self._settings.destinations)}
        return check_references(rules, destinations=known, sla_policies=[p.name for p in self._settings.sla_policies])

    async def ValidateRules(
        self, request: router_service_pb2.ValidateRulesRequest, context: Context
    ) -> router_service_pb2.ValidateRulesResponse:
        rules, problems = parse_rules(request.yaml)
        if not problems:
            problems = self._references(rules)
        return router_service_pb2.ValidateRulesResponse(
            valid=not problems, errors=_problems(problems), rule_count=count_rules(rules)
        )

    async def ReloadRules(
        self, request: router_service_pb2.ReloadRulesRequest, context: Context
    ) -> router_service_pb2.ReloadRulesResponse:
        if self._config_path is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the router runs on built-in defaults: no file")
        assert self._config_path is not None
        problems: list[RuleProblem] = []
        rules: list[Any] = []
        try:
            # The whole file through the real loader (${ENV} references, every check), off the event loop.
            config = await asyncio.to_thread(load_config, RouterConfig, self._config_path)
        except ConfigError as exc:
            problems = [RuleProblem(rule="", field="", message=str(exc))]
        else:
            rules = list(config.router.rules)
            # The rules run against this process's destinations and policies, not the file's new ones.
            problems = self._references(rules)
        if problems:
            return router_service_pb2.ReloadRulesResponse(reloaded=False, errors=_problems(problems))
        self._rules.current = tuple(rules)
        log.info("routing rules reloaded from %s: %d rules", self._config_path, count_rules(rules))
        return router_service_pb2.ReloadRulesResponse(reloaded=True, rule_count=count_rules(rules))

    async def ActOnCase(
        self, request: router_service_pb2.ActOnCaseRequest, context: Context
    ) -> router_service_pb2.ActOnCaseResponse:
        parts = await self._ready(context)
        if not request.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_id is required")
        if request.kind == case_pb2.CASE_ACTION_KIND_UNSPECIFIED:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "kind is required (acknowledge, resolve, not a complaint)"
            )
        if len(request.actor) > MAX_ACTOR_CHARS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"actor is longer than {MAX_ACTOR_CHARS} characters")
        if len(request.note) > MAX_NOTE_CHARS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"note is longer than {MAX_NOTE_CHARS} characters")
        if await parts.cases.get(request.case_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no case {request.case_id!r}")
        try:
            action_id = await parts.actions.publish(
                request.case_id,
                request.kind,
                actor=request.actor or "grpc",
                via="grpc",
                request_id=request.request_id or uuid.uuid4().hex,
                note=request.note,
            )
        except TransientError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return router_service_pb2.ActOnCaseResponse(action_id=action_id)

    async def ListDeadLetters(
        self, request: router_service_pb2.ListDeadLettersRequest, context: Context
    ) -> router_service_pb2.ListDeadLettersResponse:
        parts = await self._ready(context)
        try:
            size = page_size(request.page_size, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
            after = decode_sequence(request.page_token)
        except InvalidPageError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            found, next_sequence = await parts.dead_letters.page(
                destination=request.destination, size=size, after=after
            )
        except TransientError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        token = encode_token(str(next_sequence)) if next_sequence else ""
        return router_service_pb2.ListDeadLettersResponse(
            dead_letters=[item.info for item in found], next_page_token=token
        )

    async def ReplayDeadLetters(
        self, request: router_service_pb2.ReplayDeadLettersRequest, context: Context
    ) -> router_service_pb2.ReplayDeadLettersResponse:
        parts = await self._ready(context)
        try:
            count = await parts.dead_letters.replay(destination=request.destination, sequences=request.sequences)
        except TransientError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return router_service_pb2.ReplayDeadLettersResponse(replayed=count)
