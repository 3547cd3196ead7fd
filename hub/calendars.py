"""Which remote calendar an agent's settings point at, so that two agents never share one.

Two agents syncing one remote calendar each see the other's events as external ones and
fight over them, thousands of warnings a minute. The config loader, the start-up merge of
the config's agents and the API's agent routes refuse the second one, naming both.

An agent's remote calendar is its account plus its ``calendar`` key when set (compared
without surrounding blanks and trailing slashes), else the default calendar of its mailbox
(the email, case-insensitively) — or, for a provider whose ``calendar_per_mailbox`` is
False (CalDAV), the account's one default calendar.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from hub.model import Agent

CalendarKey = tuple[str, str]


def calendar_key(agent: Agent, account_wide_default: Collection[str]) -> CalendarKey | None:
    """The remote calendar ``agent`` syncs with (None: no account, or none named).
    ``account_wide_default`` names the accounts whose empty ``calendar`` is one calendar."""
    if not agent.account:
        return None
    calendar = agent.calendar.strip().rstrip("/")
    if calendar:
        return agent.account, f"calendar {calendar!r}"
    if agent.account in account_wide_default:
        return agent.account, "the account's default calendar"
    mailbox = agent.email.strip().lower()
    if not mailbox:
        return None  # names no calendar at all: its passes fail on their own
    return agent.account, f"the default calendar of {mailbox!r}"


def sharing(
    agent: Agent, others: Iterable[Agent], account_wide_default: Collection[str]
) -> Agent | None:
    """The first of ``others`` (not ``agent`` itself) syncing the same remote calendar."""
    key = calendar_key(agent, account_wide_default)
    if key is None:
        return None
    for other in others:
        if other.id != agent.id and calendar_key(other, account_wide_default) == key:
            return other
    return None


def clash(agent: Agent, other: Agent, account_wide_default: Collection[str]) -> str:
    """The message refusing ``agent`` because ``other`` syncs the same calendar."""
    key = calendar_key(agent, account_wide_default)
    assert key is not None
    account, calendar = key
    return (
        f"agents {other.id!r} and {agent.id!r} would both sync {calendar} of account "
        f"{account!r}; give one of them its own calendar (or mailbox)"
    )


__all__ = ["CalendarKey", "calendar_key", "clash", "sharing"]
