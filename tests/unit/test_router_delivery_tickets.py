"""Ticket records: each create attempt notes the history it carried; a found ticket syncs from the shortest."""

from __future__ import annotations

from services.router.delivery.destinations.base import Ticket
from services.router.delivery.worker import (
    CREATE_LEASE_S,
    TICKET_CODEC,
    TicketRecord,
    claim_creation,
    created_record,
    release_claim,
)

FOUND = Ticket(remote_id="35436", url="https://acme.zendesk.com/agent/tickets/35436")
MADE = Ticket(remote_id="35436", url=FOUND.url, created=True)


def test_a_first_claim_notes_the_history_it_carries() -> None:
    assert claim_creation(None, token="7", now_s=100.0, carried=3) == TicketRecord(
        claim="7", claimed_at=100.0, attempted=3
    )


def test_a_later_attempt_keeps_the_shortest_history_noted() -> None:
    lost = release_claim(claim_creation(None, token="7", now_s=100.0, carried=3), token="7")

    retried = claim_creation(lost, token="9", now_s=101.0, carried=5)

    assert retried == TicketRecord(claim="9", claimed_at=101.0, attempted=3)


def test_a_job_taking_its_own_claim_over_after_a_crash_keeps_what_it_noted() -> None:
    crashed = claim_creation(None, token="7", now_s=100.0, carried=3)

    assert claim_creation(crashed, token="7", now_s=102.0, carried=4) == TicketRecord(
        claim="7", claimed_at=102.0, attempted=3
    )


def test_another_jobs_live_claim_and_a_made_ticket_are_left_alone() -> None:
    held = claim_creation(None, token="7", now_s=100.0, carried=3)
    made = TicketRecord(remote_id="35436", synced=3)

    assert claim_creation(held, token="9", now_s=100.0 + CREATE_LEASE_S / 2, carried=4) is held
    assert claim_creation(made, token="9", now_s=100.0, carried=4) is made


def test_an_expired_claim_is_taken_over_with_its_attempts() -> None:
    held = claim_creation(None, token="7", now_s=100.0, carried=3)

    taken = claim_creation(held, token="9", now_s=100.0 + CREATE_LEASE_S + 1, carried=4)

    assert taken == TicketRecord(claim="9", claimed_at=100.0 + CREATE_LEASE_S + 1, attempted=3)


def test_releasing_another_jobs_claim_writes_nothing() -> None:
    held = claim_creation(None, token="7", now_s=100.0, carried=3)

    assert release_claim(held, token="9") is None
    assert release_claim(None, token="7") is None


def test_a_ticket_this_create_made_holds_the_history_it_carried() -> None:
    claimed = TicketRecord(claim="9", claimed_at=101.0, attempted=3)

    assert created_record(claimed, MADE, carried=5) == TicketRecord(remote_id=MADE.remote_id, url=MADE.url, synced=5)


def test_a_ticket_found_holds_only_the_shortest_history_an_attempt_carried() -> None:
    claimed = TicketRecord(claim="9", claimed_at=101.0, attempted=3)

    assert created_record(claimed, FOUND, carried=5).synced == 3


def test_a_ticket_found_with_no_attempt_noted_is_sent_the_whole_history() -> None:
    assert created_record(None, FOUND, carried=5).synced == 0
    assert created_record(TicketRecord(claim="9"), FOUND, carried=5).synced == 0


def test_the_attempts_noted_survive_the_record_encoding() -> None:
    record = TicketRecord(claim="9", claimed_at=101.5, attempted=3)

    assert TICKET_CODEC.decode(TICKET_CODEC.encode(record)) == record
