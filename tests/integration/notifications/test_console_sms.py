"""The console SMS channel: one line per SMS, to a file or standard output, from any
number of threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from ispbill.core import clock
from ispbill.notifications import channels
from ispbill.notifications.channels.console import ConsoleSms

AT = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def test_each_sms_is_one_line_in_the_file(monkeypatch, tmp_path, clean_channels):
    path = tmp_path / "sms.log"
    monkeypatch.setenv("SMS_PROVIDER", "console")
    monkeypatch.setenv("SMS_CONSOLE_FILE", str(path))
    sms = channels.sms_channel()
    assert isinstance(sms, ConsoleSms)

    with clock.use_clock(clock.FixedClock(AT)):
        first = sms.send_sms(to="+8801712345678", text="প্রিয় গ্রাহক,\nবিল\t১০০০ টাকা", reference="ispbill-1")
        second = sms.send_sms(to="+8801812345678", text="Paid, thanks", reference="ispbill-2")

    assert (first.provider_reference, second.provider_reference) == ("console-1", "console-2")
    assert path.read_text(encoding="utf-8").splitlines() == [
        "2026-11-25T06:00:00+00:00\t+8801712345678\tispbill-1\tপ্রিয় গ্রাহক,\\nবিল\\t১০০০ টাকা",
        "2026-11-25T06:00:00+00:00\t+8801812345678\tispbill-2\tPaid, thanks",
    ]


def test_without_a_file_it_writes_to_stdout(monkeypatch, capsys):
    monkeypatch.delenv("SMS_CONSOLE_FILE", raising=False)
    sms = ConsoleSms.from_env()
    with clock.use_clock(clock.FixedClock(AT)):
        assert sms.send_sms(to="+8801712345678", text="hello", reference="r").provider_reference == "console-1"
    assert capsys.readouterr().out == "2026-11-25T06:00:00+00:00\t+8801712345678\tr\thello\n"


def test_lines_from_many_threads_never_interleave(tmp_path):
    path = tmp_path / "sms.log"
    sms = ConsoleSms(path=str(path))
    text = "বাংলা " * 200  # long enough that unsynchronised writes would tear

    with ThreadPoolExecutor(max_workers=8) as pool:
        refs = list(pool.map(lambda i: sms.send_sms(to="+8801712345678", text=text, reference=f"r{i}"), range(64)))

    assert sorted(r.provider_reference for r in refs) == sorted(f"console-{n}" for n in range(1, 65))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 64
    assert all(line.split("\t")[3] == text for line in lines)
    assert sorted(line.split("\t")[2] for line in lines) == sorted(f"r{i}" for i in range(64))
