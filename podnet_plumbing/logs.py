"""Logging for every podnet process: one format, no credentials in any line, and one
line (not a traceback) for a client's malformed HTTP request.

A URL such as ``redis://:secret@host`` reaches log lines in options, errors and
exceptions; the filter here rewrites every record before any handler sees it. aiohttp logs
each request it cannot parse as an error with a full traceback, which lets any client
flood the log; such a request is the client's fault, so it becomes a warning naming it.
"""

from __future__ import annotations

import logging
import re

from aiohttp import http_exceptions

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]+@",
                          re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


class RedactCredentials(logging.Filter):
    """Replace the passwords of URLs in a record's message and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            shown = logging.Formatter().formatException(record.exc_info)
            if redact(shown) != shown:
                record.exc_text = redact(shown)
        return True


class QuietBadRequests(logging.Filter):
    """aiohttp's traceback for an unparsable request becomes one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, http_exceptions.HttpProcessingError) and error.code < 500:
            reason = str(error.message).strip().splitlines()[0] if error.message else ""
            what = record.getMessage()
            record.msg = "%s: %d %s"
            record.args = (what, error.code, reason or type(error).__name__)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(level: str | int = "INFO") -> None:
    """Log to stderr in podnet's format, through both filters."""
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactCredentials) for f in handler.filters):
            handler.addFilter(RedactCredentials())
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietBadRequests) for f in server.filters):
        server.addFilter(QuietBadRequests())
