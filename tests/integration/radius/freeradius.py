"""Run the Debian ``freeradius`` package's server from a scratch copy of its configuration.

The copy (of ``/etc/freeradius/3.0``) is changed only where a test needs it:

* the ``sql`` module is enabled with ``rlm_sql_sqlite`` on a file the test created with
  :mod:`ispbill.network.radius_schema` (the same file the driver writes through
  ``sqlite:///…``);
* the ``default`` site listens on 127.0.0.1 only, on free UDP ports (auth, acct); its
  IPv6 listeners, which would take the standard ports 1812/1813, are removed; the
  ``inner-tunnel`` site moves off its fixed port 18120 so two servers can run at once;
* the server keeps the identity it was started with (``user``/``group`` lines removed):
  as root it would otherwise drop to ``freerad``, which cannot read the test's temp dir;
* logs and the pid file go to the temp dir instead of /var/log and /var/run.

``freeradius -X`` runs in the foreground, single-threaded, logging every request to the
log file, which the fixture prints when something fails.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_CONFIG = Path("/etc/freeradius/3.0")
READY = "Ready to process requests"
START_TIMEOUT = 20.0
CLIENT_SECRET = "testing123"  # the Debian config's "localhost" client


class FreeRadiusMissing(RuntimeError):
    pass


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listen_blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each top-level ``listen { … }`` block in a site file."""
    blocks = []
    for match in re.finditer(r"(?m)^listen\s*\{", text):
        depth, i = 0, match.start()
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    blocks.append((match.start(), i + 1))
                    break
            elif text[i] == "#":  # comments may contain braces
                i = text.find("\n", i)
                if i < 0:
                    break
                continue
            i += 1
    return blocks


def _rewrite_listeners(text: str, ports: dict[str, int]) -> str:
    """IPv4 listeners → 127.0.0.1:ports[type]; IPv6 listeners removed."""
    out, last = [], 0
    for start, end in _listen_blocks(text):
        block = text[start:end]
        out.append(text[last:start])
        last = end
        if re.search(r"(?m)^\s*ipv6addr\s*=", block):
            continue
        kind = re.search(r"(?m)^\s*type\s*=\s*(\w+)", block).group(1)
        block = re.sub(r"(?m)^(\s*)ipaddr\s*=.*$", r"\1ipaddr = 127.0.0.1", block, count=1)
        block, count = re.subn(r"(?m)^(\s*)port\s*=.*$", rf"\g<1>port = {ports[kind]}", block, count=1)
        assert count == 1, f"no port line in listen block:\n{block}"
        out.append(block)
    out.append(text[last:])
    return "".join(out)


def _sub(path: Path, pattern: str, repl: str, *, count: int = 0, required: bool = True) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, repl, text, count=count, flags=re.M)
    if required and n == 0:
        raise AssertionError(f"{path}: no line matches {pattern!r} (FreeRADIUS config layout changed?)")
    path.write_text(new)


@dataclass
class FreeRadius:
    """A running server; ``log`` is its -X output."""

    root: Path
    db_path: Path
    auth_port: int
    acct_port: int
    process: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "freeradius.log"

    @property
    def confdir(self) -> Path:
        return self.root / "raddb"

    def configure(self) -> None:
        if shutil.which("freeradius") is None or not SYSTEM_CONFIG.is_dir():
            raise FreeRadiusMissing(
                "FreeRADIUS is not installed: the RADIUS tests need the Debian packages "
                "`freeradius` and `freeradius-utils` (apt-get install freeradius freeradius-utils; "
                ".ci/run installs them)"
            )
        conf = self.confdir
        shutil.copytree(SYSTEM_CONFIG, conf, symlinks=True)
        for sub in ("log", "log/radacct", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

        radiusd = conf / "radiusd.conf"
        _sub(radiusd, r"^(\s*)logdir\s*=.*$", rf"\g<1>logdir = {self.root / 'log'}", count=1)
        _sub(radiusd, r"^(\s*)run_dir\s*=.*$", rf"\g<1>run_dir = {self.root / 'run'}", count=1)
        _sub(radiusd, r"^(\s*)(user|group)\s*=.*$", r"\1# \2 removed by the test: keep the caller's identity")

        site = conf / "sites-available" / "default"
        site.write_text(_rewrite_listeners(site.read_text(), {"auth": self.auth_port, "acct": self.acct_port}))
        _sub(conf / "sites-available" / "inner-tunnel", r"^(\s*)port\s*=\s*18120\s*$", rf"\g<1>port = {free_udp_port()}")

        sql = conf / "mods-available" / "sql"
        _sub(sql, r'^(\s*)driver\s*=\s*"rlm_sql_null"', r'\1driver = "rlm_sql_sqlite"', count=1)
        _sub(sql, r'^(\s*)filename\s*=.*$', rf'\g<1>filename = "{self.db_path}"', count=1)
        _sub(sql, r'^(\s*)busy_timeout\s*=.*$', r'\g<1>busy_timeout = 5000', count=1)
        _sub(sql, r'^(\s*)bootstrap\s*=.*$', r'\1# bootstrap removed: the test created the schema', count=1)
        link = conf / "mods-enabled" / "sql"
        if not link.exists():
            link.symlink_to("../mods-available/sql")

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["freeradius", "-X", "-d", str(self.confdir)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if READY in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise AssertionError(f"freeradius exited with {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"freeradius not ready after {START_TIMEOUT:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
