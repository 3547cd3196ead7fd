"""Secrets out of log lines: query parameters that carry a credential are replaced.

A feed is opened with ``?token=<feed token>`` (calendar apps cannot send headers), OAuth
redirects carry ``code=`` and ``client_secret=``, signed URLs ``sig=``: an access log line or
an exception text quoting such a URL would hand the secret to anyone who can read the log.
:func:`redact` keeps the parameter's name and drops its value; :class:`RedactSecrets` does it
to every record passing through a logging handler, its traceback included.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# A parameter whose name says it carries a secret (token, access_token, $skiptoken,
# client_secret, password...) or one of the short names signed URLs and OAuth use.
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[^=&#\s?;]*(?:token|secret|passw|pwd|apikey|api_key)[^=&#\s?;]*"
    r"|code|key|sig|signature|auth|session))=(?P<value>[^&#\s'\"<>;]*?)"
    r"(?=[&#\s'\"<>;]|[:,.)]?(?:\s|$))",  # up to a separator, or an error's ": " after it
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the value of every secret-bearing query parameter replaced."""
    if "=" not in text:
        return text
    return _SECRET_PARAM.sub(lambda m: f"{m['name']}={REDACTED}" if m["value"] else m[0], text)


class RedactSecrets(logging.Filter):
    """A handler filter: the record's message and traceback text, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


__all__ = ["REDACTED", "RedactSecrets", "redact"]
