"""A tiny SMTP server process for the email tests (run as a script, not imported).

    python smtp_sink.py --dir DIR [--reject ADDR ...] [--defer ADDR ...]

Listens on a free port on 127.0.0.1, prints ``READY <port>`` once it accepts
connections, writes every message it receives to ``DIR/<n>.eml`` (renamed into place
when complete), answers 550 to RCPT for ``--reject`` addresses and 450 for ``--defer``
ones, and stops when its standard input closes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory: str, reject: set[str], defer: set[str]):
        self.directory = directory
        self.reject = reject
        self.defer = defer
        self.serial = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.lower() in self.defer:
            return f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.serial)
        tmp = os.path.join(self.directory, f".{n}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(f"X-Sink-Mail-From: {envelope.mail_from}\r\n".encode())
            fh.write(f"X-Sink-Rcpt-To: {','.join(envelope.rcpt_tos)}\r\n".encode())
            fh.write(envelope.original_content)
        os.replace(tmp, os.path.join(self.directory, f"{n}.eml"))
        return "250 2.0.0 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--defer", action="append", default=[])
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = Sink(args.dir, {a.lower() for a in args.reject}, {a.lower() for a in args.defer})
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin (or dies)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
