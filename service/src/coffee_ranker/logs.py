"""Log records an operator can trust: control characters escaped, one line per record, text or JSON.

Request paths, headers and exception messages come from clients. Escaped, a path cannot start a
forged line (CR, LF) or drive the operator's terminal (ESC); JSON lines escape them by construction.
"""

import json
import logging
import re
import sys
import time
from typing import Any, Dict

#: C0 and C1 controls, DEL, and the bidi controls that can reorder what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_control(text: str) -> str:
    return _UNSAFE.sub(lambda match: ascii(match.group())[1:-1], text)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, tracebacks included, always on one escaped line."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return escape_control(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for journald or CloudWatch; an access record adds its fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: Dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "http", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ensure_ascii: every control and bidi character becomes a \\u escape.
        return json.dumps(entry, ensure_ascii=True, default=str)


FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}


def configure_logging(log_format: str = "text") -> None:
    # journald adds the timestamp to text lines; one line per record.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def uvicorn_log_config(log_format: str = "text") -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": FORMATTERS[log_format]}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
        },
    }
