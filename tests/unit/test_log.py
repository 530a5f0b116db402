"""Logging: every event passes through the redaction processor, whatever the caller put in it;
``-v`` / ``-vv`` open the levels and ``--log-format json`` gives one JSON object per line."""

from __future__ import annotations

import io
import json
import re
import sys
from typing import Any

import pytest
import structlog

from reconcile import log as log_module
from reconcile.log import REDACTED, color_enabled, configure_logging

HEX_KEY = "0123456789abcdef" * 2 + "01234567"  # a W&B key: 40 hex characters
ODD_KEY = "Not-Hex-Secret-Key_42!"  # no known shape: only knowing the key can redact it


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a stream of JSON log lines (every line must be one)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_log_event_carrying_the_key_is_cleaned(log_format: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The key in the message, in a field, nested in a dict/list, in an exception, under a secret-named
    field, in a basic-auth URL and in an Authorization header: none of it reaches stderr."""
    monkeypatch.setenv("WANDB_API_KEY", ODD_KEY)
    configure_logging(log_format=log_format)
    exc = RuntimeError(f"server said no to {ODD_KEY}")
    structlog.get_logger().warning(
        f"using key {HEX_KEY}", env_key=ODD_KEY, nested={"headers": [f"Bearer {ODD_KEY}"]},
        api_key="anything", token=12345, url=f"https://api:{ODD_KEY.lower()}@api.wandb.ai",
        header="Authorization: Basic YXBpOnNlY3JldA==", error=exc, local_key="local-" + HEX_KEY,
        harmless="lr=0.1")
    err = capsys.readouterr().err
    for secret in (HEX_KEY, ODD_KEY, ODD_KEY.lower(), "YXBpOnNlY3JldA==", "anything", "12345"):
        assert secret not in err, (secret, err)
    assert err.count(REDACTED) >= 9, err
    assert "lr=0.1" in err  # only secrets go
    if log_format == "json":
        (event,) = json_lines(err)
        assert event["api_key"] == REDACTED and event["token"] == REDACTED
        assert event["nested"] == {"headers": [f"Bearer {REDACTED}"]}
        assert event["url"].startswith(f"https://api:{REDACTED}")


def test_an_exception_traceback_logged_with_the_key_is_cleaned(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """log.exception(): the rendered traceback carries the exception's message, key included."""
    monkeypatch.setenv("WANDB_API_KEY", ODD_KEY)
    configure_logging(log_format="json")
    try:
        raise ValueError(f"bad key {ODD_KEY}")
    except ValueError:
        structlog.get_logger().exception("failed")
    err = capsys.readouterr().err
    assert ODD_KEY not in err
    assert "ValueError: bad key [redacted]" in json_lines(err)[0]["exception"]


@pytest.mark.parametrize(("verbosity", "shown"), [
    (0, {"warning", "error"}),
    (1, {"warning", "error", "info"}),
    (2, {"warning", "error", "info", "debug"}),
    (3, {"warning", "error", "info", "debug"}),
])
def test_verbosity_opens_the_levels(verbosity: int, shown: set[str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """No -v: warnings and errors only; -v adds info; -vv adds debug (more v's change nothing)."""
    configure_logging(log_format="json", verbosity=verbosity)
    log = structlog.get_logger()
    for level in ("debug", "info", "warning", "error"):
        getattr(log, level)(f"probe_{level}")
    events = json_lines(capsys.readouterr().err)
    assert [e["level"] for e in events] == [lv for lv in ("debug", "info", "warning", "error") if lv in shown]
    assert all(e["event"] == f"probe_{e['level']}" and "timestamp" in e for e in events)


def test_secret_named_keys_are_cleaned_at_any_depth(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A secret-named key (any case) nested in dicts and lists loses its value; other keys keep theirs."""
    configure_logging(log_format="json")
    structlog.get_logger().warning("request", sent={"headers": {"Authorization": "Basic abc"},
                                                   "body": [{"password": "hunter2", "user": "ann"}]})
    (event,) = json_lines(capsys.readouterr().err)
    assert event["sent"] == {"headers": {"Authorization": REDACTED},
                             "body": [{"password": REDACTED, "user": "ann"}]}


@pytest.mark.parametrize(("key", "cleaned"), [("Eight-8!", True), ("Seven7!", False)])
def test_the_known_key_is_cleaned_from_eight_characters(key: str, cleaned: bool,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """WANDB_API_KEY is replaced wherever it appears once it has 8 characters (shorter values would
    blank out ordinary words)."""
    monkeypatch.setenv("WANDB_API_KEY", key)
    configure_logging(log_format="json")
    structlog.get_logger().warning(f"got {key}")
    (event,) = json_lines(capsys.readouterr().err)
    assert event["event"] == (f"got {REDACTED}" if cleaned else f"got {key}")


def test_a_registered_key_is_cleaned_like_the_wandb_key(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """An import's source key (from the variable its spec names, any shape) is replaced wherever it
    appears once registered."""
    monkeypatch.setattr(log_module, "_REGISTERED", set())
    held = "source-Key_9!zz"
    log_module.register_secret(held)
    configure_logging(log_format="json")
    structlog.get_logger().warning(f"refused {held}", detail={"url": f"http://h/?k={held}"})
    (event,) = json_lines(capsys.readouterr().err)
    assert event["event"] == f"refused {REDACTED}"
    assert event["detail"] == {"url": f"http://h/?k={REDACTED}"}


@pytest.mark.parametrize(("held", "cleaned"), [("Eight-8!", True), ("Seven7!", False)])
def test_a_key_is_registered_from_eight_characters(held: str, cleaned: bool, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """register_secret, like the W&B key, ignores values under 8 characters (they would blank out
    ordinary words)."""
    monkeypatch.setattr(log_module, "_REGISTERED", set())
    log_module.register_secret(held)
    configure_logging(log_format="json")
    structlog.get_logger().warning(f"got {held}")
    (event,) = json_lines(capsys.readouterr().err)
    assert event["event"] == (f"got {REDACTED}" if cleaned else f"got {held}")


def test_a_key_inside_a_longer_one_leaves_nothing_of_either(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Keys are replaced longest first: a registered key (or the W&B key) that is part of a longer one
    does not leave the longer one's rest in the event."""
    monkeypatch.setattr(log_module, "_REGISTERED", set())
    monkeypatch.setenv("WANDB_API_KEY", "Key-part!")
    for held in ("Key-part!-and-more-secret", "Key-part!-and", "secret-Key-part!-and-more-secret-too",
                 "Zz-inner-secret", "Aa-Zz-inner-secret-outer"):
        log_module.register_secret(held)
    configure_logging(log_format="json")
    structlog.get_logger().warning("sent secret-Key-part!-and-more-secret-too, Key-part!-and-more-secret, "
                                   "Key-part!-and, Key-part!, Aa-Zz-inner-secret-outer")
    (event,) = json_lines(capsys.readouterr().err)
    assert event["event"] == f"sent {REDACTED}, {REDACTED}, {REDACTED}, {REDACTED}, {REDACTED}"


def test_defaults_are_console_lines_warnings_and_up_with_utc_iso_times(
        capsys: pytest.CaptureFixture[str]) -> None:
    """configure_logging() with no arguments: console lines (not JSON), warnings and up, ISO UTC stamps."""
    configure_logging()
    log = structlog.get_logger()
    log.info("hidden")
    log.warning("shown", n=1)
    (line,) = capsys.readouterr().err.splitlines()
    assert not line.startswith("{")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[warning\s*\] shown\s+n=1$", line), line


def test_a_second_configuration_reaches_loggers_already_used(capsys: pytest.CaptureFixture[str]) -> None:
    """Module-level loggers (apply's observers, the retry layer) follow a later configure_logging: the
    level and format are never frozen at first use."""
    from reconcile.apply import progress

    observer = progress.LogObserver()
    configure_logging(log_format="json", verbosity=0)
    observer.log.info("first")
    configure_logging(log_format="json", verbosity=1)
    observer.log.info("second")
    assert [e["event"] for e in json_lines(capsys.readouterr().err)] == ["second"]


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "flag", "env", "colored"), [
    (Terminal(), None, None, True),  # a terminal, no flag, no NO_COLOR: color
    (Terminal(), True, None, False),  # --no-color
    (Terminal(), False, "1", False),  # NO_COLOR set
    (Terminal(), False, "", True),  # NO_COLOR set but empty: ignored (no-color.org)
    (io.StringIO(), None, None, False),  # not a terminal
    (object(), None, None, False),  # no isatty at all
])
def test_color_only_on_a_terminal_without_no_color(stream: Any, flag: bool | None, env: str | None,
                                                   colored: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Color needs a terminal, no --no-color and no non-empty NO_COLOR."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    if env is not None:
        monkeypatch.setenv("NO_COLOR", env)
    got = color_enabled(stream) if flag is None else color_enabled(stream, no_color=flag)
    assert got is colored


@pytest.mark.parametrize(("kwargs", "env", "colored"), [
    ({}, None, True),
    ({"no_color": True}, None, False),
    ({}, "1", False),
    ({"log_format": "json"}, None, False),
])
def test_console_log_lines_are_colored_on_a_terminal_only(kwargs: dict[str, Any], env: str | None,
                                                          colored: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Log lines to a terminal stderr carry ANSI colors unless --no-color, NO_COLOR or JSON say no."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    if env is not None:
        monkeypatch.setenv("NO_COLOR", env)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    configure_logging(**kwargs)
    structlog.get_logger().warning("shown", n=1)
    out = terminal.getvalue()
    assert "shown" in out
    assert ("\x1b[" in out) is colored, out


def test_digests_are_shown_whole_and_keys_still_cleaned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan's sha256 digest (64 hex) and an md5 (32 hex) are not key-shaped and stay whole; a 40-hex
    key (alone, local- prefixed, between punctuation) is still cleaned without being known."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(log_module, "_REGISTERED", set())
    digest = "sha256:" + "0123456789abcdef" * 4
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert log_module.redact_text(f"plan ({digest}), md5 {md5}") == f"plan ({digest}), md5 {md5}"
    assert log_module.redact_text(f"key={HEX_KEY}; (local-{HEX_KEY})") == f"key={REDACTED}; ({REDACTED})"
    assert log_module.redact_text(f"{HEX_KEY}\n") == f"{REDACTED}\n"
