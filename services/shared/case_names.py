"""The short names of case enums, as config files, CRMs, histories and the CLI write them.

A rule says ``priority: urgent`` and a history says "acknowledge by dana via grpc"; the messages
carry the enums (``CasePriority``, ``CaseActionVia``). These functions turn one into the other, so
no service keeps its own table of prefixes.
"""

from __future__ import annotations

from typing import Literal

from clamor.v1 import case_pb2

Priority = Literal["urgent", "high", "normal", "low"]
Via = Literal["link", "grpc", "pagerduty", "crm"]

_PRIORITY_PREFIX = "CASE_PRIORITY_"
_VIA_PREFIX = "CASE_ACTION_VIA_"


def priority_value(name: str) -> case_pb2.CasePriority.ValueType:
    """``"urgent"`` → ``CASE_PRIORITY_URGENT``; raises ValueError for a name that is none of :data:`Priority`."""
    return case_pb2.CasePriority.Value(_PRIORITY_PREFIX + name.upper())


def priority_name(value: case_pb2.CasePriority.ValueType) -> str:
    """``CASE_PRIORITY_URGENT`` → ``"urgent"``; empty when unset, the number when unknown to this build."""
    if value == case_pb2.CASE_PRIORITY_UNSPECIFIED:
        return ""
    try:
        return case_pb2.CasePriority.Name(value).removeprefix(_PRIORITY_PREFIX).lower()
    except ValueError:
        return str(value)


def via_value(name: str) -> case_pb2.CaseActionVia.ValueType:
    """``"grpc"`` → ``CASE_ACTION_VIA_GRPC``; raises ValueError for a name that is none of :data:`Via`."""
    return case_pb2.CaseActionVia.Value(_VIA_PREFIX + name.upper())


def via_name(value: case_pb2.CaseActionVia.ValueType) -> str:
    """``CASE_ACTION_VIA_GRPC`` → ``"grpc"``; empty when unset, the number when unknown to this build."""
    if value == case_pb2.CASE_ACTION_VIA_UNSPECIFIED:
        return ""
    try:
        return case_pb2.CaseActionVia.Name(value).removeprefix(_VIA_PREFIX).lower()
    except ValueError:
        return str(value)


def action_name(kind: case_pb2.CaseActionKind.ValueType) -> str:
    """``CASE_ACTION_KIND_ACKNOWLEDGE`` → ``"acknowledge"``: the word action ids, subjects and histories use."""
    return case_pb2.CaseActionKind.Name(kind).removeprefix("CASE_ACTION_KIND_").lower()
