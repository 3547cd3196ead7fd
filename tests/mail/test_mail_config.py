"""The [email] section and the per-agent copy keys: every problem one key-path line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import main
from hub.config import ConfigError, load_config
from hub.mail.settings import DEFAULT_EMAIL_SUBJECT, Security
from hub.plugins import load_plugins

GOOD = """
[email]
smtp = "smtp.example.com:587"
security = "starttls"
username = "calhub@example.com"
password_env = "CALHUB_SMTP_PASSWORD"
from = "Helpdesk calendar <calhub@example.com>"
alerts_to = ["helpdesk-admins@example.com"]
subject_template = "{kind}: [#{request_id}] {request_subject} {start:%a %d %b %H:%M}"

[[agents]]
id = "alice"
email = "alice@example.com"
email_copies = true
copy_to = ["Dispatch <dispatch@example.com>"]
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "calhub.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, load_plugins({}).registry, env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    return caught.value.problems


def test_the_documented_section_loads(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD, {"CALHUB_SMTP_PASSWORD": "pw"})
    email = config.email  # type: ignore[attr-defined]
    assert (email.host, email.port, email.security) == ("smtp.example.com", 587, Security.STARTTLS)
    assert email.password == "pw" and "pw" not in repr(email)  # never in a log line
    assert email.sender_address == "calhub@example.com"
    assert email.copies["alice"].to_agent and email.copies["alice"].copy_to == (
        "Dispatch <dispatch@example.com>",
    )
    assert config.agents[0].email == "alice@example.com"  # type: ignore[attr-defined]
    bare = load(tmp_path, '[email]\nsmtp = "localhost:25"\nsecurity = "none"\nfrom = "a@b.example"')
    assert bare.email.subject_template == DEFAULT_EMAIL_SUBJECT  # type: ignore[attr-defined]


def test_each_problem_is_one_line_naming_the_key(tmp_path: Path) -> None:
    text = """
[email]
smtp = "smtp.example.com"
security = "none"
username = "calhub"
password_env = "NOT_SET_ANYWHERE"
from = "not an address"
alerts_to = ["ok@example.com", "broken@"]
subject_template = "{change}: {customer_name} {start:%Q}"
debounce = "soon"
ca_file = "/no/such/ca.pem"
colour = "red"

[[agents]]
id = "alice"
email_copies = "yes"
copy_to = "dispatch@example.com"

[[agents]]
id = "bob"
email_copies = true
"""
    found = problems(tmp_path, text)
    assert len(found) == len(set(found))
    keys = [line.split(":", 1)[0] for line in found]
    assert keys == [
        "email.smtp",
        "email.password_env",
        "email.from",
        "email.ca_file",
        "email.alerts_to",
        "email.subject_template",
        "email.subject_template",
        "email.debounce",
        "agents[0].email_copies",
        "agents[0].copy_to",
        "agents[1].email_copies",
        "email.colour",
    ]
    assert "environment variable NOT_SET_ANYWHERE is not set" in found[1]
    assert "unknown field 'customer_name'" in found[5] and "%Q" in found[6]
    assert "'broken@' is not an e-mail address" in found[4]
    assert "the agent has no email" in found[10]


def test_security_none_only_for_a_loopback_relay(tmp_path: Path) -> None:
    text = '[email]\nsmtp = "smtp.example.com:25"\nsecurity = "none"\nfrom = "a@b.example"'
    (line,) = problems(tmp_path, text)
    assert line.startswith("email.security: 'none' sends mail and password in clear")
    for host in ("127.0.0.1", "localhost", "[::1]"):
        load(tmp_path, text.replace("smtp.example.com", host))


def test_a_password_is_never_written_in_the_file(tmp_path: Path) -> None:
    text = GOOD.replace('password_env = "CALHUB_SMTP_PASSWORD"', 'password = "hunter2"')
    found = problems(tmp_path, text)
    assert found == [
        "email.password: secrets are not written in the file; use password_env or password_file"
    ]


def test_copies_without_an_email_section(tmp_path: Path) -> None:
    text = '[[agents]]\nid = "alice"\nemail = "a@example.com"\ncopy_to = ["c@example.com"]'
    assert problems(tmp_path, text) == [
        "agents[0].copy_to: needs an [email] section (smtp, from) to send copies"
    ]


def test_the_command_line_exits_2_with_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text(GOOD.replace("alice@example.com", "alice(at)example.com"), encoding="utf-8")
    assert main(["check", "email", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "email.password_env: environment variable CALHUB_SMTP_PASSWORD is not set (or is empty)",
        "agents[0].email: 'alice(at)example.com' is not an e-mail address (email_copies sends"
        " to it)",
    ]


def test_every_email_key_is_documented() -> None:
    from hub.mail.settings import AGENT_EMAIL_KEYS, EMAIL_KEYS

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = {
        line.split("|")[1].strip().strip("`") for line in doc.splitlines() if line.startswith("| `")
    }
    missing = {*EMAIL_KEYS, *AGENT_EMAIL_KEYS} - documented
    assert not missing, f"keys missing from docs/configuration.md: {sorted(missing)}"
