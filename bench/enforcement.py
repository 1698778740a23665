"""Benchmark: network enforcement against the RouterOS simulator (prints numbers).

    .venv/bin/python bench/enforcement.py
    .venv/bin/python bench/enforcement.py --suspensions 10000 --secrets 50000 --latency-ms 5

(b) bulk suspension: ``--suspensions`` subscribers, all online, suspended on one
    simulated router that delays every reply by ``--latency-ms`` (target: 10,000 in
    ≤ 10 s at 5 ms). Each suspension is three commands (profile, address list, end the
    session), so 10,000 suspensions are 30,000 commands: one round trip each would take
    150 s; the driver pipelines tagged commands instead. Then the same batch again (must
    change nothing) and the bulk restore.
(c) reconcile read: ``read_state`` of a router with ``--secrets`` secrets (40 % online,
    10 % suspended) and the diff against desired state (target: 50,000 in ≤ 10 s).

(a) payment → restore latency (target < 1 s from the webhook) is not measured here: it is
    measured once the payment webhook path dispatches restore actions. The router part of
    it is one ``RouterOSDriver.restore``, timed below as "single restore".

The simulator runs in this process (its own thread and event loop), so simulator and
driver share one CPU's GIL: numbers are pessimistic compared with a real router.
Setup (creating secrets and sessions) is not measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ispbill.network.drift import Desired, diff  # noqa: E402
from ispbill.network.drivers.base import Target  # noqa: E402
from ispbill.network.drivers.routeros import RouterOSDriver  # noqa: E402
from ispbill.sim.routeros import RouterOSSimulator  # noqa: E402

PACKAGE = "home-10M"
SUSPENDED = "Suspended_Profile"


def _address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def bench_bulk_suspend(count: int, latency: float, connections: int) -> None:
    print(f"(b) bulk suspend: {count:,} subscribers online, {latency * 1000:g} ms latency per command")
    with RouterOSSimulator(users={"admin": "admin"}, latency=latency) as sim:
        sim.add_profile(PACKAGE)
        names = [str(100000 + i) for i in range(count)]
        sim.add_secrets(names, profile=PACKAGE)
        for i, name in enumerate(names):
            sim.add_active(name, _address(i))
        targets = [Target(i, name, PACKAGE) for i, name in enumerate(names)]
        with RouterOSDriver("127.0.0.1", sim.port, "admin", "admin", connections=connections) as driver:
            started = time.perf_counter()
            result = driver.bulk_suspend(targets)
            elapsed = time.perf_counter() - started
            counts = sim.command_counts
            suspended = sum(1 for s in sim.secrets() if s["profile"] == SUSPENDED)
            print(f"    suspended {len(result.ok):,} (failed {len(result.failed)}) in {elapsed:.2f} s"
                  f" = {len(result.ok) / elapsed:,.0f}/s  [target: 10,000 in <= 10 s]")
            print(f"    router: {suspended:,} secrets on {SUSPENDED}, {len(sim.address_list('suspended')):,}"
                  f" address-list entries, {len(sim.active()):,} sessions left;"
                  f" commands: set {counts['/ppp/secret/set']:,}, add {counts['/ip/firewall/address-list/add']:,},"
                  f" kick {counts['/ppp/active/remove']:,}, prints"
                  f" {sum(v for k, v in counts.items() if k.endswith('/print'))}")

            started = time.perf_counter()
            again = driver.bulk_suspend(targets)
            elapsed = time.perf_counter() - started
            writes = sum(v for k, v in sim.command_counts.items() if not k.endswith("/print")) - sum(
                v for k, v in counts.items() if not k.endswith("/print")
            )
            print(f"    repeat (idempotent): {len(again.ok):,} ok in {elapsed:.2f} s, {writes} writes")

            for i, name in enumerate(names):
                sim.add_active(name, _address(i))
            started = time.perf_counter()
            restored = driver.bulk_restore(targets)
            elapsed = time.perf_counter() - started
            print(f"    bulk restore: {len(restored.ok):,} (failed {len(restored.failed)}) in {elapsed:.2f} s")

            sim.add_active(names[0], _address(0))
            driver.suspend(targets[0])
            sim.add_active(names[0], _address(0))
            started = time.perf_counter()
            driver.restore(targets[0])
            elapsed = time.perf_counter() - started
            print(f"    single restore (online subscriber, {count:,} secrets on the router):"
                  f" {elapsed * 1000:.0f} ms")


def bench_read_state(count: int, latency: float) -> None:
    print(f"(c) read_state + diff: {count:,} secrets, {latency * 1000:g} ms latency per command")
    with RouterOSSimulator(users={"admin": "admin"}, latency=latency) as sim:
        sim.add_profile(PACKAGE)
        names = [str(500000 + i) for i in range(count)]
        sim.add_secrets(names[: count - count // 10], profile=PACKAGE)
        sim.add_secrets(names[count - count // 10 :], profile=SUSPENDED)
        for i, name in enumerate(names):
            if i % 5 < 2:
                sim.add_active(name, _address(i))
        for i in range(count - count // 10, count):
            if i % 5 < 2:
                sim.add_address_list_entry("suspended", _address(i), comment=str(i))
        # Desired: the last 10 % plus every 100th should be suspended; a few are unknown.
        desired = [
            Desired(i, name, PACKAGE, suspended=i >= count - count // 10 or i % 100 == 0)
            for i, name in enumerate(names[: count - 50])
        ]
        with RouterOSDriver("127.0.0.1", sim.port, "admin", "admin") as driver:
            started = time.perf_counter()
            state = driver.read_state()
            read = time.perf_counter() - started
            started = time.perf_counter()
            drift = diff(desired, state, suspended_profile=SUSPENDED)
            compared = time.perf_counter() - started
        print(f"    read_state: {len(state.secrets):,} secrets, {len(state.active):,} sessions,"
              f" {len(state.suspended):,} suspended entries in {read:.2f} s")
        print(f"    diff: {compared:.2f} s -> to suspend {len(drift.to_suspend):,},"
              f" to restore {len(drift.to_restore):,}, online unpaid {len(drift.online_unpaid):,},"
              f" unknown on router {len(drift.unknown_on_router):,}")
        print(f"    total {read + compared:.2f} s  [target: 50,000 in <= 10 s]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suspensions", type=int, default=10_000)
    parser.add_argument("--secrets", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    latency = args.latency_ms / 1000.0
    bench_bulk_suspend(args.suspensions, latency, args.connections)
    bench_read_state(args.secrets, latency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
