"""The default SMS channel: writes each SMS as one line instead of sending it.

For development, demos and staging. ``SMS_CONSOLE_FILE`` names a file to append to;
without it the lines go to standard output.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Mapping

from ispbill.core import clock
from ispbill.notifications.channels.base import SendResult


def _one_line(value: str) -> str:
    # Tabs separate the columns and newlines separate the messages, so both are escaped.
    return value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


class ConsoleSms:
    """Each SMS becomes ``<timestamp>\\t<to>\\t<reference>\\t<text>`` (text on one line)."""

    def __init__(self, *, path: str | None = None):
        self.path = path or None
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ConsoleSms":
        env = os.environ if environ is None else environ
        return cls(path=env.get("SMS_CONSOLE_FILE", "").strip() or None)

    def __repr__(self) -> str:
        return f"ConsoleSms({self.path or 'stdout'})"

    def send_sms(self, *, to: str, text: str, reference: str) -> SendResult:
        stamp = clock.now().isoformat(timespec="seconds")
        with self._lock:
            n = next(self._serial)
            line = "\t".join((stamp, _one_line(to), _one_line(reference), _one_line(text))) + "\n"
            if self.path:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
        return SendResult(provider_reference=f"console-{n}")
