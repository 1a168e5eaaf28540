"""Log lines as text or JSON (`log_format: text | json`), each carrying the request it was
written for: a request id, the user, the endpoint, and for the request's own line its
status and duration, so a log store can search them.

The request's fields live in context variables set by the request wrapper
(homeserver/http.py) and the access-token check (client_api/context.py), so any line logged
while a request is handled carries them, whatever module writes it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "parley_request_id", default=None)
request_user: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "parley_request_user", default=None)
request_endpoint: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "parley_request_endpoint", default=None)

access_log = logging.getLogger("parley.access")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message",
                                                                           "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the request's fields, any `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        for key, var in (("request_id", request_id), ("user", request_user),
                         ("endpoint", request_endpoint)):
            value = var.get()
            if value is not None:
                line[key] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The text format, with the request id and user when a request is being handled."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = request_id.get()
        if rid is not None:
            user = request_user.get()
            text += f" [request {rid}{' ' + user if user else ''}]"
        return text


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger once, for `parley run` and the other commands."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
