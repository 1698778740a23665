"""The ``ispbill`` command.

    ispbill serve [--host H] [--port P] [--demo-router] [--demo-gateways]   web + worker (+ demo simulators)
    ispbill web [--host H] [--port P]     web only (workers run elsewhere)
    ispbill worker                        scheduler + outbox dispatcher
    ispbill migrate                       create/upgrade the database
    ispbill demo [--force]                load demo data into an empty database
    ispbill tick [--at ISO-8601]          run every job once as of that instant, drain the outbox
    ispbill createadmin --username U --password P
    ispbill createroles                   create or complete the staff roles (groups) and permissions
    ispbill apitoken --username U         print a new API token (last line)
    ispbill check-ledger                  verify every invoice against the ledger
    ispbill import-router ROUTER [--map P=PKG]… [--dry-run]   subscribers from a router's PPP secrets
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispbill.settings")
    import django

    django.setup()


def cmd_migrate(args) -> int:
    _setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=args.verbosity)
    return 0


def cmd_demo(args) -> int:
    _setup()
    from ispbill.core import clock
    from ispbill.demo.data import load_demo

    result = load_demo(now=clock.now(), if_empty=not args.force)
    if result.skipped:
        print("Database already has subscribers; demo data not loaded (use --force to add it anyway).")
    else:
        print(
            f"Demo data loaded: {result.packages} packages, {result.subscribers} subscribers, "
            f"{result.invoices} invoices, {result.payments} payments."
        )
    print(f"Staff login: {result.admin_username} / {result.admin_password}")
    return 0


def cmd_createadmin(args) -> int:
    _setup()
    from django.contrib.auth import get_user_model

    User = get_user_model()
    user, created = User.objects.get_or_create(username=args.username, defaults={"is_staff": True, "is_superuser": True})
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(args.password)
    user.save()
    print(f"{'Created' if created else 'Updated'} admin user '{args.username}'.")
    return 0


def cmd_createroles(args) -> int:
    _setup()
    from django.contrib.auth.models import Group

    from ispbill.backoffice.roles import ROLES
    from ispbill.backoffice.services import ensure_roles

    def held() -> dict[str, set[str]]:
        return {
            g.name: {f"{p.content_type.app_label}.{p.codename}" for p in g.permissions.all()}
            for g in Group.objects.filter(name__in=list(ROLES)).prefetch_related("permissions__content_type")
        }

    before = held()
    ensure_roles()
    after = held()
    for role in ROLES:
        added = sorted(after.get(role, set()) - before.get(role, set()))
        if role not in before:
            print(f"Created role '{role}' with {len(after[role])} permissions.")
        elif added:
            print(f"Completed role '{role}': added {', '.join(added)}.")
        else:
            print(f"Role '{role}' already complete ({len(after[role])} permissions).")
    return 0


def cmd_apitoken(args) -> int:
    _setup()
    from ispbill.api.tokens import issue_token
    from ispbill.core.errors import DomainError

    try:
        print(issue_token(username=args.username))
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_tick(args) -> int:
    _setup()
    from ispbill.core import clock
    from ispbill.core.timeutil import parse_instant

    if not args.at:
        return _tick(clock.now())
    try:
        at = parse_instant(args.at)
    except ValueError:
        print(f"error: --at '{args.at}' is not an ISO-8601 date-time", file=sys.stderr)
        return 2
    # Restored afterwards: ``main`` is also called in-process (tests, other commands).
    with clock.use_clock(clock.FixedClock(at)):
        return _tick(clock.now())


def _tick(now) -> int:
    from ispbill.worker import outbox, scheduler

    failed = 0
    for outcome in scheduler.run_due_jobs(now, force=True):
        print(f"{outcome.name}: {'ok' if outcome.ok else 'FAILED'} {outcome.result}")
        failed += not outcome.ok
    result = outbox.drain(now=now)
    print(f"outbox: {result.done} done, {result.retried} to retry, {result.dead} dead")
    return 1 if failed else 0


def cmd_check_ledger(args) -> int:
    _setup()
    from ispbill.billing.ledger import ledger_discrepancies

    problems = ledger_discrepancies()
    for p in problems:
        print(p)
    print(f"{len(problems)} discrepancies")
    return 1 if problems else 0


def cmd_import_router(args) -> int:
    _setup()
    from ispbill.core import clock
    from ispbill.core.errors import DomainError
    from ispbill.core.phone import PhoneError, normalize_bd_mobile
    from ispbill.core.timeutil import local_date
    from ispbill.network import importer
    from ispbill.network.connections import driver_for
    from ispbill.network.drivers.base import DriverError

    try:
        router = importer.find_router(args.router)
        maps = importer.parse_maps(args.map or [])
        default = importer.package_named(args.default_package, option="--default-package") if args.default_package else None
        placeholder = ""
        if args.placeholder_phone:
            try:
                placeholder = normalize_bd_mobile(args.placeholder_phone)
            except PhoneError as exc:
                print(f"error: --placeholder-phone: {exc}", file=sys.stderr)
                return 2
    except importer.ImportRefused as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    try:
        driver = driver_for(router)
        secrets = list(driver.read_state().secrets.values())
    except Exception as exc:  # unreachable, login refused, unreadable stored password
        print(f"error: cannot read PPP secrets from {router.name}: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 1
    plan = importer.plan_import(
        router=router, secrets=secrets, maps=maps, default_package=default,
        phone_from_comment=args.phone_from_comment, placeholder_phone=placeholder,
        suspended_profile=getattr(driver, "suspended_profile", "") or router.suspended_profile,
    )
    verb = "Would create" if args.dry_run else "Creating"
    print(f"{router.name}: {len(secrets)} PPP secrets, {len(plan.known)} already in billing.")
    if plan.create:
        print(f"{verb} {len(plan.create)} subscribers:")
        for item in plan.create:
            flags = [item.status] if item.status != "active" else []
            if item.phone_source == "placeholder":
                flags.append("placeholder phone")
            note = f" [{', '.join(flags)}]" if flags else ""
            print(f"  {item.username}: {item.name} | {item.phone} | {item.package.name} (profile {item.profile}){note}")
    if plan.skipped:
        print(f"Skipped {len(plan.skipped)}:")
        for skip in plan.skipped:
            print(f"  {skip.username}: {skip.reason}")
    if args.dry_run:
        print(f"Dry run: nothing written. {len(plan.create)} would be created, {len(plan.skipped)} skipped.")
        return 0
    try:
        created = importer.apply_import(plan, today=local_date(clock.now()))
    except (DomainError, DriverError) as exc:
        print(f"error: import rolled back, nothing created: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    print(f"Created {created} subscribers on {router.name}; skipped {len(plan.skipped)}; {len(plan.known)} already in billing.")
    return 0


def cmd_worker(args) -> int:
    _setup()  # settings.LOGGING already sends ispbill.* to the console
    from ispbill.worker.loop import run_forever

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_forever(stop, poll_seconds=args.poll)
    return 0


def _gunicorn_argv(host: str, port: int) -> list[str]:
    workers = os.environ.get("ISPBILL_WEB_WORKERS", "2")
    threads = os.environ.get("ISPBILL_WEB_THREADS", "4")
    return [
        sys.executable, "-m", "gunicorn", "ispbill.wsgi:application",
        "--bind", f"{host}:{port}", "--workers", workers, "--threads", threads,
        "--worker-class", "gthread", "--access-logfile", "-", "--graceful-timeout", "10",
        # Payment-link tokens are in request paths: the logger redacts them.
        "--logger-class", "ispbill.core.logs.GunicornLogger",
    ]


def cmd_web(args) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispbill.settings")
    argv = _gunicorn_argv(args.host, args.port)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def _demo_router_port() -> int:
    # The demo data's router (ispbill.demo.data) reads the same variable, same default.
    return int(os.environ.get("ISPBILL_DEMO_ROUTER_PORT", "") or "18728")


def _wait_until_listening(port: int, child: subprocess.Popen, *, timeout: float, stopping) -> None:
    """Wait until ``child`` accepts connections on 127.0.0.1:``port`` (or exits, or a stop
    is requested, or ``timeout`` passes: the caller's loop deals with each)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None and not stopping():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)


def _demo_gateways_port() -> int:
    return int(os.environ.get("ISPBILL_DEMO_GATEWAYS_PORT", "") or "18780")


def _public_url(host: str, port: int) -> str:
    """Where browsers and the simulated gateways reach this server: ISPBILL_PUBLIC_URL if
    set, else the serve address (a wildcard address is reached on 127.0.0.1)."""
    if os.environ.get("ISPBILL_PUBLIC_URL", "").strip():
        return os.environ["ISPBILL_PUBLIC_URL"].strip().rstrip("/")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _wait_for_file(path: str, child: subprocess.Popen, *, timeout: float, stopping) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None and not stopping():
        if os.path.exists(path):
            return True
        time.sleep(0.1)
    return os.path.exists(path)


def cmd_serve(args) -> int:
    """Run ``web`` and ``worker`` as children; if either stops, stop both.

    ``--demo-router`` first starts a simulated MikroTik (``ispbill.sim.routeros``) for the
    demo data's router, loaded with its subscribers' accounts from the database, and waits
    until it listens, so the worker's first pass already reaches it.

    ``--demo-gateways`` starts the bKash, Nagad and SSLCommerz simulators
    (``ispbill.sim.gateways``, port $ISPBILL_DEMO_GATEWAYS_PORT, default 18780, and the
    next one for bKash's TLS) in one more child, and gives web and worker the gateway
    variables pointing at them, with ISPBILL_PUBLIC_URL (unless set) as this server's
    address. Refused in production mode.
    """
    if getattr(args, "demo_gateways", False) and os.environ.get("ISPBILL_MODE", "").strip().lower() == "production":
        print("error: --demo-gateways is for trying ispbill out; it is refused when ISPBILL_MODE=production",
              file=sys.stderr)
        return 2
    tmp_dirs: list[str] = []
    try:
        return _serve(args, tmp_dirs)
    finally:
        for path in tmp_dirs:
            shutil.rmtree(path, ignore_errors=True)


def _serve(args, tmp_dirs: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispbill.settings")
    me = [sys.executable, "-m", "ispbill.cli"]
    children: list[subprocess.Popen] = []
    stopping_since: float | None = None

    def stop(*_):
        nonlocal stopping_since
        if stopping_since is None:
            stopping_since = time.monotonic()
        for child in children:
            if child.poll() is None:
                child.terminate()

    # Handlers first, so a signal that arrives while the children start still stops them.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    extra = ""
    if args.demo_router:
        port = _demo_router_port()
        children.append(subprocess.Popen([
            sys.executable, "-m", "ispbill.sim.routeros", "--host", "127.0.0.1", "--port", str(port),
            "--user", "admin:admin", "--from-database", "demo-router",
        ]))
        _wait_until_listening(port, children[0], timeout=30, stopping=lambda: stopping_since is not None)
        extra = f"; simulated demo router on 127.0.0.1:{port}"
    child_env = None  # the children inherit this environment unless the demo gateways add to it
    if getattr(args, "demo_gateways", False) and all(c.poll() is None for c in children) and stopping_since is None:
        port = _demo_gateways_port()
        public_url = _public_url(args.host, args.port)
        tmp = tempfile.mkdtemp(prefix="ispbill-demo-gateways-")
        tmp_dirs.append(tmp)
        env_file = os.path.join(tmp, "gateways.json")
        sims = subprocess.Popen([
            sys.executable, "-m", "ispbill.sim.gateways", "--host", "127.0.0.1", "--port", str(port),
            "--tls-port", str(port + 1), "--public-url", public_url, "--env-file", env_file,
        ])
        children.append(sims)
        if _wait_for_file(env_file, sims, timeout=30, stopping=lambda: stopping_since is not None):
            with open(env_file) as fh:
                gateways = json.load(fh)
            child_env = {**os.environ, **gateways["env"], "ISPBILL_PUBLIC_URL": public_url}
            extra += f"; demo gateways (bKash, Nagad, SSLCommerz) on {gateways['http']}"
        elif sims.poll() is None and stopping_since is None:
            print("ispbill: the gateway simulators did not start in 30 s; stopping", file=sys.stderr)
            stop()
    if all(c.poll() is None for c in children):  # else the loop below reports the child that failed
        children.append(subprocess.Popen(me + ["web", "--host", args.host, "--port", str(args.port)], env=child_env))
        children.append(subprocess.Popen(me + ["worker"], env=child_env))
    if stopping_since is not None:
        stop()
    print(f"ispbill serving on http://{args.host}:{args.port}/ (worker running{extra}); Ctrl-C to stop", flush=True)
    code = 0
    while True:
        for child in children:
            if child.poll() is not None and stopping_since is None:
                print(f"ispbill: a child process exited with {child.returncode}; stopping", file=sys.stderr)
                # a child killed by a signal has a negative returncode; report plain failure
                code = child.returncode if child.returncode > 0 else 1
                stop()
        if all(c.poll() is not None for c in children):
            break
        if stopping_since is not None and time.monotonic() - stopping_since > SERVE_STOP_TIMEOUT:
            for child in children:
                if child.poll() is None:
                    print(f"ispbill: child {child.pid} ignored SIGTERM for {SERVE_STOP_TIMEOUT}s; killing it", file=sys.stderr)
                    child.kill()
        time.sleep(0.2)
    return code


SERVE_STOP_TIMEOUT = 30


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ispbill", description="Billing automation for Internet service providers.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, helptext in (("serve", cmd_serve, "web + worker in one command"), ("web", cmd_web, "web server only")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--host", default=os.environ.get("ISPBILL_HOST", "127.0.0.1"))
        p.add_argument("--port", type=int, default=int(os.environ.get("ISPBILL_PORT", "8000")))
        if name == "serve":
            p.add_argument("--demo-router", action="store_true",
                           help="also run a simulated MikroTik for the demo data's router (port $ISPBILL_DEMO_ROUTER_PORT, default 18728)")
            p.add_argument("--demo-gateways", action="store_true",
                           help="also run simulated bKash, Nagad and SSLCommerz and pay through them "
                                "(port $ISPBILL_DEMO_GATEWAYS_PORT, default 18780, and the next one)")
        p.set_defaults(func=fn)
    p = sub.add_parser("worker", help="scheduler and outbox dispatcher")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between polls when idle")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("migrate", help="create or upgrade the database")
    p.add_argument("--verbosity", type=int, default=1)
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("demo", help="load demo data when the database has no subscribers")
    p.add_argument("--force", action="store_true", help="load even if subscribers exist")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("tick", help="run every job once as of --at, then dispatch the outbox")
    p.add_argument("--at", help="ISO-8601 instant; without an offset it is read in ISPBILL_TIME_ZONE")
    p.set_defaults(func=cmd_tick)
    p = sub.add_parser("createadmin", help="create or update a staff superuser")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.set_defaults(func=cmd_createadmin)
    p = sub.add_parser("createroles", help="create or complete the staff roles (groups) and their permissions")
    p.set_defaults(func=cmd_createroles)
    p = sub.add_parser("apitoken", help="print a new API token for a user")
    p.add_argument("--username", required=True)
    p.set_defaults(func=cmd_apitoken)
    p = sub.add_parser("check-ledger", help="verify every invoice's amount due against the ledger")
    p.set_defaults(func=cmd_check_ledger)
    p = sub.add_parser("import-router", help="create subscribers from a router's PPP secrets")
    p.add_argument("router", help="the router's name or id")
    p.add_argument("--map", action="append", metavar="PROFILE=PACKAGE_NAME",
                   help="package for secrets on PROFILE (repeatable); otherwise the package whose router profile it is")
    p.add_argument("--default-package", metavar="NAME", help="package for secrets whose profile maps to none")
    p.add_argument("--phone-from-comment", action="store_true",
                   help="take the phone number from the secret's comment (a Bangladeshi mobile number in it)")
    p.add_argument("--placeholder-phone", metavar="01XXXXXXXXX",
                   help="phone for secrets without one (otherwise they are skipped)")
    p.add_argument("--dry-run", action="store_true", help="print what would be created; write nothing")
    p.set_defaults(func=cmd_import_router)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
