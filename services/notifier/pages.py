"""Escalation policies at work: who was told about a case, and who is next if nobody answers.

A page is one case's walk up its policy's steps (on-call → lead → manager). It is kept in KV,
so a restarted notifier resumes the walk where it was: the step, the loop and when the step
started are all in the record, and each step's notification has a stable item id, so a step
is notified once however often the walk is resumed. Pure functions; the dispatcher stores.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.notifier.message import Message

if TYPE_CHECKING:
    from services.notifier.config import EscalationPolicy


class PageState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    # Every step (and every repeat) was notified and nobody answered.
    EXHAUSTED = "exhausted"


@dataclass
class Page:
    case_id: str
    policy: str
    # The latest escalation of the case, as every step is told about it.
    message: Message
    step_started_at: datetime
    step: int = 0
    loop: int = 0
    state: PageState = PageState.OPEN
    actor: str = ""
    via: str = ""
    answered_at: datetime | None = None
    # When the page opened; None on a page stored before it was kept.
    opened_at: datetime | None = None


def policy_for(team: str, policies: list[EscalationPolicy]) -> EscalationPolicy | None:
    """The policy naming ``team``, else the first that names no team, else None."""
    for policy in policies:
        if team in policy.teams:
            return policy
    return next((policy for policy in policies if not policy.teams), None)


def step_item_id(page: Page) -> str:
    """Stable per case, loop and step: notifying a step twice is a repeat the groups drop."""
    return f"{page.case_id}:{page.policy}:{page.loop}:{page.step}"


def open_page(page: Page | None, *, case_id: str, policy: str, message: Message, now: datetime) -> Page:
    """The case's page with its newest escalation; a new page starts at step 1 of ``policy``."""
    if page is None:
        return Page(case_id=case_id, policy=policy, message=message, step_started_at=now, opened_at=now)
    if page.message == message:
        return page
    return replace(page, message=message)


def advance(page: Page, policy: EscalationPolicy, now: datetime) -> Page | None:
    """The page one step on when its step timed out unanswered, or None when nothing is due."""
    if page.state is not PageState.OPEN or page.step >= len(policy.steps):
        return None
    timeout = timedelta(seconds=policy.steps[page.step].timeout_s)
    if now < page.step_started_at + timeout:
        return None
    changed = replace(page)
    changed.step_started_at = now
    if page.step + 1 < len(policy.steps):
        changed.step = page.step + 1
    elif page.loop < policy.repeat:
        changed.step, changed.loop = 0, page.loop + 1
    else:
        changed.state = PageState.EXHAUSTED
    return changed


def due_at(page: Page, policy: EscalationPolicy) -> datetime | None:
    if page.state is not PageState.OPEN or page.step >= len(policy.steps):
        return None
    return page.step_started_at + timedelta(seconds=policy.steps[page.step].timeout_s)


def answer(page: Page | None, state: PageState, *, actor: str, via: str, now: datetime) -> Page | None:
    """The page acknowledged or resolved; unchanged when it already was (or resolved before an ack)."""
    if page is None:
        return None
    rank = {PageState.OPEN: 0, PageState.EXHAUSTED: 0, PageState.ACKNOWLEDGED: 1, PageState.RESOLVED: 2}
    if rank[page.state] >= rank[state]:
        return page
    return replace(page, state=state, actor=actor, via=via, answered_at=now)


def acknowledged(before: Page | None, after: Page | None) -> bool:
    """Whether the change from ``before`` to ``after`` is the page's acknowledgement."""
    return before is not None and after is not before and after is not None and after.state is PageState.ACKNOWLEDGED


def time_to_acknowledge(page: Page) -> float | None:
    """Seconds from the page's opening to its acknowledgement, when both are known."""
    if page.opened_at is None or page.answered_at is None:
        return None
    return max(0.0, (page.answered_at - page.opened_at).total_seconds())


def step_message(page: Page, policy: EscalationPolicy) -> Message:
    """What a step is told: the escalation itself at step 1, and why it reached them after that."""
    if page.step == 0 and page.loop == 0:
        return page.message
    previous = policy.steps[page.step - 1] if page.step else policy.steps[-1]
    waited = _duration(previous.timeout_s)
    return replace(
        page.message,
        title=f"[{page.message.severity}] case {page.case_id} unanswered: step {page.step + 1} of {policy.name}",
        reason=f"nobody acknowledged within {waited}; first raised because: {page.message.reason}",
        level=page.step + 1 + page.loop * len(policy.steps),
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"
