"""Spreadsheet import of subscribers, step by step: upload (the file is parsed and kept as
an :class:`ImportBatch`), choose the columns, dry run (every row checked, nothing
written), confirm (the valid rows created, each on its own).

The reading and checking of rows is :mod:`ispbill.subscribers.importing` (pure); this
module brings it what the database knows and does the writing.

Confirming writes a chunk of rows per transaction, so a big file never holds SQLite's one
write lock for long: payments, the worker and other staff get their turn between chunks.
The confirming request imports for a couple of seconds; what is left, the worker
finishes (the ``backoffice.import`` outbox item written with the confirmation), while
the result page shows how far it has got.
"""

from __future__ import annotations

import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from ispbill.audit.services import Target, record
from ispbill.backoffice.models import ImportBatch, ImportStatus
from ispbill.core import clock
from ispbill.core.errors import DomainError, NotFound
from ispbill.core.timeutil import local_date
from ispbill.network.models import Router
from ispbill.plans.models import Package
from ispbill.subscribers import importing
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import create_subscriber
from ispbill.worker import outbox

MAX_FILE_BYTES = 5 * 1024 * 1024
BATCH_LIFETIME = timedelta(hours=24)
#: Rows created per transaction, and at most about this long per transaction: on SQLite
#: everyone else's writes wait that long at most.
CHUNK_ROWS = 200
CHUNK_SECONDS = 0.5
#: The pause between chunks on SQLite. A writer waiting for the lock looks again every
#: 100 ms at most (SQLite's busy handler); a shorter gap could let the next chunk take the
#: lock before it ever looks.
SQLITE_PAUSE_SECONDS = 0.15
#: How long the confirming request imports before it leaves the rest to the worker.
REQUEST_SECONDS = 2.0
#: How long the worker imports at a time before its other work (messages, routers) runs.
WORKER_SECONDS = 5.0
#: An import job that records no chunk for this long is taken for stopped: confirming
#: again, or the worker, carries on where it was.
STALL_AFTER = timedelta(seconds=60)
IMPORT_TOPIC = "backoffice.import"
#: Batches that are (being) imported: they no longer expire, and their columns are kept.
_STARTED = (ImportStatus.IMPORTING, ImportStatus.CONFIRMED)


def _refuse(message: str, code: str) -> DomainError:
    return DomainError(message, code=code, status=422)


def start_import(*, file_name: str, data: bytes, now: datetime, user=None) -> ImportBatch:
    """Parse an uploaded file into a new batch with the guessed column mapping. Refuses
    (DomainError) a file that is too big, of another kind, or unreadable. Expired
    unconfirmed batches are deleted on the way."""
    if len(data) > MAX_FILE_BYTES:
        raise _refuse(_("The file is larger than %(mb)d MB.") % {"mb": MAX_FILE_BYTES // (1024 * 1024)}, "file_too_large")
    if not file_name.lower().endswith(importing.EXTENSIONS):
        raise _refuse(_("Only .csv and .xlsx files can be imported."), "file_type")
    try:
        table = importing.read_table(data, file_name)
    except importing.ImportFileError as exc:
        raise _refuse(str(exc), "file_unreadable") from None
    purge_expired_imports(now=now)
    return ImportBatch.objects.create(
        file_name=file_name[:255], uploaded_by=user if getattr(user, "is_authenticated", False) else None,
        uploaded_at=now, expires_at=now + BATCH_LIFETIME, headers=table.headers, rows=table.rows,
        row_count=len(table.rows), mapping=importing.guess_mapping(table.headers),
    )


def purge_expired_imports(*, now: datetime) -> int:
    """Delete the unconfirmed batches past their expiry; confirmed ones (and those being
    imported) stay as history."""
    deleted, _ = ImportBatch.objects.exclude(status__in=_STARTED).filter(expires_at__lt=now).delete()
    return deleted


def open_batch(batch_id: int, *, now: datetime) -> ImportBatch:
    """The batch, or NotFound when there is none or it has expired unconfirmed."""
    batch = ImportBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(_("There is no such upload."), code="import_not_found")
    if batch.status not in _STARTED and batch.expires_at < now:
        raise NotFound(_("This upload has expired; upload the file again."), code="import_expired")
    return batch


def save_mapping(
    *, batch_id: int, mapping: dict[str, int | None], default_package: int | None, default_router: int | None,
    now: datetime,
) -> ImportBatch:
    """Keep the columns staff chose. Every required field needs a column (the package may
    come from the default instead); one column serves one field."""
    batch = open_batch(batch_id, now=now)
    if batch.status == ImportStatus.CONFIRMED:
        raise _refuse(_("This file has already been imported."), "import_already_confirmed")
    if batch.status == ImportStatus.IMPORTING:
        raise _refuse(_("This file is being imported; its page shows how far it has got."), "import_in_progress")
    clean: dict[str, int | None] = {}
    for f in importing.FIELDS:
        index = mapping.get(f.name)
        if index is not None and not 0 <= index < len(batch.headers):
            index = None
        clean[f.name] = index
    used = [i for i in clean.values() if i is not None]
    if len(used) != len(set(used)):
        raise _refuse(_("Each column can be chosen for one field only."), "column_twice")
    if default_package is not None and not Package.objects.filter(pk=default_package).exists():
        raise _refuse(_("Unknown default package."), "unknown_package")
    if default_router is not None and not Router.objects.filter(pk=default_router).exists():
        raise _refuse(_("Unknown default router."), "unknown_router")
    missing = [
        str(f.label) for f in importing.FIELDS
        if f.required and clean[f.name] is None and not (f.name == "package" and default_package is not None)
    ]
    if missing:
        raise _refuse(_("Choose a column for: %(fields)s.") % {"fields": ", ".join(missing)}, "column_missing")
    batch.mapping = clean
    batch.default_package_id = default_package
    batch.default_router_id = default_router
    batch.status = ImportStatus.MAPPED
    batch.save(update_fields=["mapping", "default_package", "default_router", "status"])
    return batch


def _lookups(rows, mapping, *, check_taken: bool) -> importing.Lookups:
    taken = None
    if check_taken:
        index = mapping.get("pppoe_username")
        names = sorted({row[index].strip() for row in rows if index is not None and row[index].strip()})
        taken = set()
        for start in range(0, len(names), 500):  # SQLite allows a bounded number of parameters
            taken.update(
                Subscriber.objects.filter(pppoe_username__in=names[start:start + 500]).values_list("pppoe_username", flat=True)
            )
    return importing.Lookups(
        packages={name.casefold(): pk for pk, name in Package.objects.values_list("pk", "name")},
        routers={name.casefold(): pk for pk, name in Router.objects.values_list("pk", "name")},
        taken_usernames=taken,
    )


@dataclass
class Preview:
    batch: ImportBatch
    rows: list[importing.RowResult]

    @property
    def ok_count(self) -> int:
        return sum(1 for r in self.rows if r.ok)

    @property
    def error_count(self) -> int:
        return len(self.rows) - self.ok_count


def preview_import(*, batch_id: int, now: datetime) -> Preview:
    """The dry run: every row checked against the database as it is now. Writes nothing."""
    batch = open_batch(batch_id, now=now)
    return Preview(batch, _check(batch, check_taken=True))


def _check(batch: ImportBatch, *, check_taken: bool) -> list[importing.RowResult]:
    return importing.check_rows(
        batch.rows, mapping=batch.mapping, lookups=_lookups(batch.rows, batch.mapping, check_taken=check_taken),
        default_package=batch.default_package_id, default_router=batch.default_router_id,
    )


def _errors(errors) -> list[dict]:
    return [{"field": e.field, "code": e.code, "message": e.message} for e in errors]


def confirm_import(
    *, batch_id: int, now: datetime, user=None, ip: str | None = None, seconds: float | None = None,
    chunk_rows: int | None = None,
) -> ImportBatch:
    """Start importing the batch's valid rows, and import them for about ``seconds``
    (default REQUEST_SECONDS); returns the batch, ``confirmed`` when every row is done,
    else still ``importing`` (the worker carries on: see :func:`continue_import`).

    Each valid row is created through ``create_subscriber`` in its own savepoint: a row
    refused now (say, its username was taken since the dry run) is reported and the
    others still go in. Rows are written a chunk at a time (``chunk_rows``, default
    CHUNK_ROWS), each chunk in one transaction together with its results, so an import
    cut short anywhere carries on after its last chunk without creating a row twice.

    A batch is confirmed once: again is refused, and so is confirming it while an import
    job is working on it. Confirming a batch whose job has stopped (STALL_AFTER without
    a chunk) carries on with it. Each subscriber gets its own audit event from
    ``create_subscriber``; the batch gets one ``import.confirm`` event when it is done.

    A start date in the past is kept as the subscriber's join date, but billing starts
    on the day of the confirmation: months before the import are not invoiced by it.
    """
    seconds = REQUEST_SECONDS if seconds is None else seconds
    chunk_rows = chunk_rows or CHUNK_ROWS
    job = f"import:{batch_id}:{uuid.uuid4().hex}"
    with transaction.atomic():
        batch = open_batch(batch_id, now=now)
        batch = ImportBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.status == ImportStatus.CONFIRMED:
            raise DomainError(_("This file has already been imported."), code="import_already_confirmed", status=409)
        changed, checked = ["locked_by", "locked_until"], None
        if batch.status == ImportStatus.IMPORTING:
            if batch.locked_until is not None and batch.locked_until > now:
                raise DomainError(
                    _("This file is being imported; its page shows how far it has got."),
                    code="import_in_progress", status=409,
                )
        elif batch.status != ImportStatus.MAPPED:
            raise _refuse(_("Choose the columns and run the dry run first."), "import_not_mapped")
        else:
            # Usernames are checked by create_subscriber, row by row, at the moment of creation.
            checked = _check(batch, check_taken=False)
            if not any(r.ok for r in checked):
                raise _refuse(_("No row is valid: nothing to import."), "import_nothing_valid")
            batch.status = ImportStatus.IMPORTING
            batch.confirmed_at = now
            batch.confirmed_by = user if getattr(user, "is_authenticated", False) else None
            batch.created_count = batch.failed_count = 0
            batch.results = []
            changed += ["status", "confirmed_at", "confirmed_by", "created_count", "failed_count", "results"]
        batch.locked_by = job
        batch.locked_until = now + STALL_AFTER
        batch.save(update_fields=changed)
        # What this request leaves undone, the worker finishes; it starts once the request has had its turn.
        outbox.enqueue(
            topic=IMPORT_TOPIC, dedupe_key=job, now=now, available_at=now + timedelta(seconds=seconds),
            payload={"batch": batch.pk, "user": user.pk if getattr(user, "is_authenticated", False) else None,
                     "ip": ip, "chunk_rows": chunk_rows},
        )
    return _run_import(batch.pk, job=job, checked=checked, user=user, ip=ip, seconds=seconds, chunk_rows=chunk_rows)


@outbox.handler(IMPORT_TOPIC)
def continue_import(item, attempt) -> None:
    """The worker's part of an import: a few seconds of chunks at a time, then its other
    work gets a turn and it comes back, until the batch is confirmed. Waits while another
    job is working on the batch (a request confirming it again after this one stopped)."""
    payload = item.payload
    user = get_user_model().objects.filter(pk=payload.get("user")).first() if payload.get("user") else None
    batch = _run_import(
        payload["batch"], job=item.dedupe_key, user=user, ip=payload.get("ip"), seconds=WORKER_SECONDS,
        chunk_rows=payload.get("chunk_rows") or CHUNK_ROWS,
    )
    if batch is not None and batch.status == ImportStatus.IMPORTING:
        done = batch.created_count + batch.failed_count
        raise outbox.RetryLater(
            f"{done} of {batch.row_count} rows imported", count_attempt=False,
            after_seconds=1 if batch.locked_by == item.dedupe_key else 5,
        )


def _run_import(
    batch_id: int, *, job: str, checked: list[importing.RowResult] | None = None, user=None, ip: str | None = None,
    seconds: float, chunk_rows: int,
) -> ImportBatch | None:
    """Import the batch's next rows as ``job``, a chunk per transaction, for about
    ``seconds`` (at least one chunk) or until the batch is confirmed. Does nothing while
    another job is working on it. Returns the batch as it was left (None if it is gone).
    Should a chunk fail, it is rolled back and the batch is let go at once, for the
    worker or confirming again to carry on. ``checked``: the batch's rows checked, when
    the caller has just done so."""
    batch = ImportBatch.objects.filter(pk=batch_id).defer("results").first()
    if batch is None or batch.status != ImportStatus.IMPORTING:
        return batch
    if checked is None:
        checked = _check(batch, check_taken=False)
    today = local_date(batch.confirmed_at)
    started = time.monotonic()
    try:
        while True:
            batch = _import_chunk(
                batch_id, job=job, checked=checked, today=today, user=user, ip=ip, chunk_rows=chunk_rows,
            )
            if batch.status != ImportStatus.IMPORTING or batch.locked_by != job:
                return batch
            if time.monotonic() - started >= seconds:
                return batch
            if connection.vendor == "sqlite":
                time.sleep(SQLITE_PAUSE_SECONDS)
    except BaseException:
        with suppress(DatabaseError):
            ImportBatch.objects.filter(pk=batch_id, locked_by=job).update(locked_until=None)
        raise


def _import_chunk(
    batch_id: int, *, job: str, checked: list[importing.RowResult], today: date, user, ip: str | None, chunk_rows: int,
) -> ImportBatch:
    """The next rows after those with results, created and recorded in one transaction
    with the batch row locked: another job importing the same batch waits, then finds
    them done. The last chunk also confirms the batch."""
    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().defer("rows", "headers").get(pk=batch_id)
        if batch.status != ImportStatus.IMPORTING:
            return batch
        if batch.locked_by != job and batch.locked_until is not None and batch.locked_until > clock.now():
            return batch  # another job is working on it
        results = batch.results
        started = time.monotonic()
        for row in checked[len(results):len(results) + chunk_rows]:
            results.append(_import_row(row, today=today, user=user, ip=ip))
            if time.monotonic() - started >= CHUNK_SECONDS:
                break
        created = sum(1 for e in results if e["status"] == "created")
        batch.created_count, batch.failed_count = created, len(results) - created
        now = clock.now()
        if len(results) < len(checked):
            batch.locked_by, batch.locked_until = job, now + STALL_AFTER
            batch.save(update_fields=["results", "created_count", "failed_count", "locked_by", "locked_until"])
            return batch
        batch.status = ImportStatus.CONFIRMED
        batch.locked_by, batch.locked_until = "", None
        batch.rows = []  # the results keep what the page shows; the raw cells are no longer needed
        batch.save(update_fields=[
            "status", "results", "created_count", "failed_count", "locked_by", "locked_until", "rows",
        ])
        record(
            action="import.confirm", at=now, user=user,
            target=Target("importbatch", batch.pk, batch.file_name[:200]),
            after={"file": batch.file_name, "rows": len(results), "created": created, "failed": len(results) - created},
            ip=ip, summary=_("Imported %(created)d of %(rows)d rows from %(file)s") % {
                "created": created, "rows": len(results), "file": batch.file_name},
        )
    return batch


def _import_row(row: importing.RowResult, *, today: date, user, ip) -> dict:
    entry = {"number": row.number, "values": row.values, "status": "failed", "subscriber": None,
             "errors": _errors(row.errors)}
    if not row.ok:
        return entry
    data = dict(row.data)
    started = data.get("activated_on")
    if started is not None and started < today:
        data["billed_through"] = today - timedelta(days=1)
    try:
        with transaction.atomic():
            sub = create_subscriber(today=today, user=user, ip=ip, **data)
    except DomainError as exc:
        entry["errors"] = [{"field": exc.field or "", "code": exc.code, "message": exc.message}]
    except (IntegrityError, DataError):
        entry["errors"] = [{"field": "", "code": "not_saved", "message": _("the database refused this row")}]
    else:
        entry.update(status="created", subscriber=sub.pk)
    return entry


def import_running(batch: ImportBatch, *, now: datetime) -> bool:
    """Whether an import job is working on the batch now (False once it has stopped
    without finishing: confirming again carries on)."""
    return batch.status == ImportStatus.IMPORTING and batch.locked_until is not None and batch.locked_until > now


def recent_imports(limit: int = 10) -> list[ImportBatch]:
    return list(
        ImportBatch.objects.filter(status__in=_STARTED).select_related("confirmed_by")
        .defer("rows", "results", "headers").order_by("-confirmed_at", "-id")[:limit]
    )
