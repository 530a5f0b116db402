"""structlog set-up, done once at CLI start, and the redaction every output passes through.

Console lines on a TTY, JSON lines with ``--log-format json``; both on stderr. A
redaction processor removes the API key, any other key registered with ``register_secret``
(an import's source key), and anything shaped like one from every event, whatever the caller passed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_KEY_SHAPES = re.compile(
    # W&B keys: 40 hex characters, local- prefixed on W&B Server. Exactly 40: a longer run of hex is a
    # digest (a plan's sha256, an md5 is shorter), not a key, and must be shown whole.
    r"(?<![0-9A-Fa-f])(?:local-)?[0-9a-f]{40}(?![0-9A-Fa-f])"
    r"|(?<=api:)[^\s\"']+"  # the secret half of a basic-auth pair
    r"|(?i:(?<=authorization: basic )[A-Za-z0-9+/=]+)"
)
_SECRET_FIELDS = {"api_key", "apikey", "key", "password", "authorization", "token", "secret"}
REDACTED = "[redacted]"


_REGISTERED: set[str] = set()
"""Other keys this process holds (an import's source key, read from the variable its spec names)."""


def register_secret(value: str) -> None:
    """Redact ``value`` from every later event too (ignored below 8 characters, like the W&B key)."""
    if len(value) >= 8:
        _REGISTERED.add(value)


def _known_secrets() -> list[str]:
    """The keys to replace, longest first (a key inside a longer one must not leave its rest)."""
    key = os.environ.get("WANDB_API_KEY", "")
    return sorted({key, *_REGISTERED} if len(key) >= 8 else _REGISTERED, key=len, reverse=True)


def redact_text(text: str) -> str:
    """``text`` with the API key and anything shaped like a W&B key replaced."""
    for secret in _known_secrets():
        text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in _SECRET_FIELDS else _redact_value(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact_text(repr(value))
    return value


def redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drop secrets from every field of every event."""
    for k in list(event_dict):
        event_dict[k] = REDACTED if k.lower() in _SECRET_FIELDS else _redact_value(event_dict[k])
    return event_dict


def color_enabled(stream: Any, *, no_color: bool = False) -> bool:
    """Whether to color output to ``stream``: a terminal, and neither ``--no-color`` nor a
    non-empty ``NO_COLOR`` in the environment (https://no-color.org)."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def configure_logging(*, log_format: str = "console", verbosity: int = 0, no_color: bool = False) -> None:
    """Configure structlog once: level from ``-v``, renderer from ``--log-format``."""
    level = logging.WARNING - 10 * min(verbosity, 2)
    if log_format == "json":
        renderer: Any = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=color_enabled(sys.stderr, no_color=no_color))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
