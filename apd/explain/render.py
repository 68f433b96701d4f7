"""An explanation as text for a person or JSON for a script (pure)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from apd.explain.runner import Explanation
from apd.log_escape import escape_controls

SHOWN_ATTRIBUTES = (
    "protocol_state",
    "client_address",
    "client_name",
    "helo_name",
    "sender",
    "recipient",
    "sasl_username",
    "recipient_count",
    "size",
)


def as_json(explanation: Explanation) -> str:
    """The documented JSON shape (README): request, checks (each with name / priority / skipped /
    result / decided / error / store_down / findings / log / statements / notices), action,
    decided_by, note."""
    return json.dumps(dataclasses.asdict(explanation), indent=2, sort_keys=False, default=str)


def as_text(explanation: Explanation, sql: bool = False) -> str:
    """The explanation for a person; ``sql`` adds each check's SQL statements with their rows."""
    out: list[str] = []
    request = explanation.request
    out.append("request:")
    for name in SHOWN_ATTRIBUTES:
        if request.get(name):
            out.append(f"  {name} = {escape_controls(request[name])}")
        elif name == "sender":
            out.append("  sender = <> (the null sender)")
    out.append("checks, in order:")
    for number, trace in enumerate(explanation.checks, 1):
        head = f"  {number}. {trace.name} (priority {trace.priority})"
        if trace.skipped:
            out.append(f"{head}: skipped, {trace.skipped}")
            continue
        if trace.store_down:
            out.append(f"{head}: DATABASE DOWN: {escape_controls(trace.store_down)}")
        elif trace.error:
            out.append(f"{head}: failed: {trace.error}")
        else:
            answer = trace.result if trace.result is not None else "no opinion"
            verdict = "DECIDES" if trace.decided else "goes on"
            out.append(f"{head}: {escape_controls(answer)} ({verdict})")
        for line in trace.findings:
            out.append(f"       found: {line}")
        for line in trace.log:
            out.append(f"       log: {line}")
        for statement in trace.statements if sql else ():
            out.append(f"       {_statement(statement)}")
        for notice in trace.notices:
            out.append(f"       notice: {notice}")
    out.append(f"decided by: {explanation.decided_by or '(no check: the default answer)'}")
    if explanation.note:
        out.append(f"note: {explanation.note}")
    out.append(f"action: {escape_controls(explanation.action)}")
    return "\n".join(out) + "\n"


SQL_SHOWN = 240  # characters of a statement in the text form (JSON has it whole)


def _statement(statement: Any) -> str:
    sql = statement.sql if len(statement.sql) <= SQL_SHOWN else statement.sql[: SQL_SHOWN - 3] + "..."
    text = f"sql {statement.database}: {escape_controls(sql)}"
    if statement.params:
        text += f"  params {escape_controls(repr(statement.params))}"
    if statement.error:
        return text + f"  -> error: {escape_controls(statement.error)}"
    if statement.write:
        return text + f"  -> {statement.row_count} row(s) changed (undone: explain writes nothing)"
    if not statement.row_count:
        return text + "  -> no row"
    rows = "; ".join(escape_controls(repr(tuple(row))) for row in statement.rows or [])
    more = (
        f" (+{statement.row_count - len(statement.rows or [])} more)"
        if statement.row_count > len(statement.rows or [])
        else ""
    )
    return text + f"  -> {statement.row_count} row(s): {rows}{more}"
