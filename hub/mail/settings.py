"""The ``[email]`` section and the per-agent ``email_copies``/``copy_to`` keys.

Read by :func:`hub.config.load_config` with the same ``key.path: reason`` problems as every
other section: a bad address, an unknown template field, a missing password or an unsafe
``security = "none"`` each add one line and the command line exits 2.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.durations import parse_duration
from hub.render import FIELDS, check_template

if TYPE_CHECKING:  # hub.config imports this module
    from hub.config import _Table

COPY_FIELDS = frozenset({*FIELDS, "change"})
DEFAULT_EMAIL_SUBJECT = "{change}: [#{request_id}] {request_subject} {start:%a %d %b %H:%M}"
DEFAULT_DEBOUNCE = timedelta(seconds=30)
AGENT_EMAIL_KEYS = ("email_copies", "copy_to")
EMAIL_KEYS = [
    "smtp",
    "security",
    "username",
    "password_env",
    "password_file",
    "from",
    "ca_file",
    "alerts_to",
    "subject_template",
    "debounce",
    "timeout",
]

# An addr-spec as mail servers take it: no spaces, quotes or brackets, a dotted domain.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")


class Security(StrEnum):
    """How the SMTP connection is protected."""

    STARTTLS = "starttls"  # plain connect, then STARTTLS (port 587)
    TLS = "tls"  # TLS from the first byte (port 465)
    NONE = "none"  # no TLS: loopback relays only


@dataclass(frozen=True, slots=True)
class CopyTargets:
    """Who gets copies of one agent's appointments."""

    to_agent: bool = False  # ``email_copies``: to the agent's own e-mail
    copy_to: tuple[str, ...] = ()  # coordinators


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """The validated ``[email]`` section; ``password`` comes from ``password_env``/``_file``
    and is kept out of ``repr`` (it must never reach a log)."""

    host: str
    port: int
    sender: str  # the ``from`` key: ``Name <address>`` or an address
    security: Security = Security.STARTTLS
    username: str = ""
    password: str | None = field(default=None, repr=False)
    ca_file: str = ""
    alerts_to: tuple[str, ...] = ()
    subject_template: str = DEFAULT_EMAIL_SUBJECT
    debounce: timedelta = DEFAULT_DEBOUNCE
    timeout: float = 30.0
    copies: Mapping[str, CopyTargets] = field(default_factory=dict)  # by agent id

    @property
    def sender_address(self) -> str:
        return parseaddr(self.sender)[1]

    @property
    def domain(self) -> str:
        return self.sender_address.rpartition("@")[2] or "calhub"


def address_problem(text: str) -> str | None:
    """Why ``text`` is not an e-mail address (``Name <a@b.c>`` allowed), or None."""
    if "\r" in text or "\n" in text:
        return "an address cannot contain a line break"
    _name, address = parseaddr(text)
    if not address or not _ADDRESS.fullmatch(address) or ".." in address:
        return f"{text!r} is not an e-mail address"
    return None


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _address(value: object) -> str:
    text = _string(value).strip()
    problem = address_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def _addresses(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array of e-mail addresses, got {value!r}")
    problems = [p for item in value if (p := _item_problem(item))]
    if problems:
        raise ValueError("\n".join(problems))
    return tuple(item.strip() for item in value)


def _item_problem(item: object) -> str | None:
    if not isinstance(item, str):
        return f"expected an e-mail address, got {item!r}"
    return address_problem(item.strip())


def _smtp(value: object) -> tuple[str, int]:
    text = _string(value)
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"expected 'host:port', e.g. 'smtp.example.com:587', got {text!r}")
    return host, int(port)


def _security(value: object) -> Security:
    text = _string(value)
    if text not in tuple(Security):
        raise ValueError(f"{text!r} is not one of 'starttls', 'tls', 'none'")
    return Security(text)


def _subject(value: object) -> str:
    text = _string(value)
    problems = check_template(text, COPY_FIELDS, formats=True)
    if problems:
        raise ValueError("\n".join(problems))
    return text


MAX_DEBOUNCE = timedelta(days=1)  # a copy held longer is a copy lost to the reader
MAX_TIMEOUT = 3600.0  # seconds; far beyond any SMTP server, far below a sleep that overflows


def _debounce(value: object) -> timedelta:
    span = parse_duration(value)
    if span < timedelta(0):
        raise ValueError(f"must not be negative, got {value!r}")
    if span > MAX_DEBOUNCE:
        raise ValueError(f"must be at most 1d, got {value!r}")
    return span


def _timeout(value: object) -> float:
    # `not 0 < value <= MAX` also refuses nan, which compares false with everything.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT
    ):
        raise ValueError(f"expected seconds above 0 and at most {MAX_TIMEOUT:g}, got {value!r}")
    return float(value)


def _ca_file(value: object) -> str:
    text = _string(value)
    if text and not Path(text).is_file():
        raise ValueError(f"no file {text!r}")
    return text


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_email(
    t: _Table,
    agents: object,
    password: Callable[[_Table], object],
) -> EmailSettings:
    """The ``[email]`` table ``t``; ``agents`` is the raw ``[[agents]]`` array (for the
    copy keys) and ``password(t)`` resolves the ``password_env``/``password_file`` secret."""
    smtp = t.take("smtp", _smtp, ("", 0))
    if not t.has("smtp"):
        t.problem("smtp", "required, e.g. 'smtp.example.com:587'")
    security = t.take("security", _security, Security.STARTTLS)
    host, port = smtp
    if host and security is Security.NONE and not is_loopback(host):
        t.problem(
            "security",
            f"'none' sends mail and password in clear: only for a relay on this machine "
            f"(localhost, 127.0.0.1, ::1), not {host!r}; use 'starttls' or 'tls'",
        )
    username = t.take("username", _string, "")
    secret = password(t)
    given = any(t.has(k) for k in ("password", "password_env", "password_file"))
    if username and not secret and not given:
        t.problem("password_env", "required with username; name the environment variable")
    if secret and not username:
        t.problem("username", "required when a password is set")
    if not t.has("from"):
        t.problem("from", "required, e.g. 'Helpdesk calendar <calhub@example.com>'")
    settings = EmailSettings(
        host=host,
        port=port,
        security=security,
        username=username,
        password=str(secret) if secret else None,
        sender=t.take("from", _address, ""),
        ca_file=t.take("ca_file", _ca_file, ""),
        alerts_to=t.take("alerts_to", _addresses, ()),
        subject_template=t.take("subject_template", _subject, DEFAULT_EMAIL_SUBJECT),
        debounce=t.take("debounce", _debounce, DEFAULT_DEBOUNCE),
        timeout=t.take("timeout", _timeout, 30.0),
        copies=_copies(agents, t.problems, configured=True),
    )
    t.unknown(EMAIL_KEYS)
    return settings


def check_agent_copies(agents: object, problems: list[str]) -> None:
    """With no ``[email]`` section, an agent asking for copies is a problem."""
    _copies(agents, problems, configured=False)


def _copies(agents: object, problems: list[str], *, configured: bool) -> dict[str, CopyTargets]:
    copies: dict[str, CopyTargets] = {}
    if not isinstance(agents, list):
        return copies  # reported by the [[agents]] reader
    for i, entry in enumerate(agents):
        if not isinstance(entry, dict) or not any(k in entry for k in AGENT_EMAIL_KEYS):
            continue
        targets = _agent_copies(entry, f"agents[{i}]", problems, configured)
        agent_id = entry.get("id")
        if targets is not None and isinstance(agent_id, str):
            copies[agent_id] = targets
    return copies


def _agent_copies(
    entry: Mapping[str, Any], path: str, problems: list[str], configured: bool
) -> CopyTargets | None:
    found = len(problems)
    to_agent = entry.get("email_copies", False)
    if not isinstance(to_agent, bool):
        problems.append(f"{path}.email_copies: expected true or false, got {to_agent!r}")
        to_agent = False
    copy_to: Sequence[str] = ()
    if "copy_to" in entry:
        try:
            copy_to = _addresses(entry["copy_to"])
        except ValueError as exc:
            problems.extend(f"{path}.copy_to: {line}" for line in str(exc).splitlines())
    email = entry.get("email", "")
    if to_agent and isinstance(email, str):
        if not email:
            problems.append(f"{path}.email_copies: the agent has no email to send copies to")
        elif problem := address_problem(email):
            problems.append(f"{path}.email: {problem} (email_copies sends to it)")
    if (to_agent or copy_to) and not configured:
        key = "email_copies" if to_agent else "copy_to"
        problems.append(f"{path}.{key}: needs an [email] section (smtp, from) to send copies")
    if len(problems) > found:
        return None
    return CopyTargets(to_agent=to_agent, copy_to=tuple(copy_to))


__all__ = [
    "AGENT_EMAIL_KEYS",
    "COPY_FIELDS",
    "DEFAULT_EMAIL_SUBJECT",
    "CopyTargets",
    "EmailSettings",
    "Security",
    "address_problem",
    "check_agent_copies",
    "is_loopback",
    "read_email",
]
