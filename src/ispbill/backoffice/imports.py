"""Spreadsheet import of subscribers, step by step: upload (the file is parsed and kept as
an :class:`ImportBatch`), choose the columns, dry run (every row checked, nothing
written), confirm (the valid rows created, each on its own).

The reading and checking of rows is :mod:`ispbill.subscribers.importing` (pure); this
module brings it what the database knows and does the writing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import DataError, IntegrityError, transaction
from django.utils.translation import gettext as _

from ispbill.audit.services import Target, record
from ispbill.backoffice.models import ImportBatch, ImportStatus
from ispbill.core.errors import DomainError, NotFound
from ispbill.network.models import Router
from ispbill.plans.models import Package
from ispbill.subscribers import importing
from ispbill.subscribers.models import Subscriber
from ispbill.subscribers.services import create_subscriber

MAX_FILE_BYTES = 5 * 1024 * 1024
BATCH_LIFETIME = timedelta(hours=24)


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
    """Delete the unconfirmed batches past their expiry; confirmed ones stay as history."""
    deleted, _ = ImportBatch.objects.exclude(status=ImportStatus.CONFIRMED).filter(expires_at__lt=now).delete()
    return deleted


def open_batch(batch_id: int, *, now: datetime) -> ImportBatch:
    """The batch, or NotFound when there is none or it has expired unconfirmed."""
    batch = ImportBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(_("There is no such upload."), code="import_not_found")
    if batch.status != ImportStatus.CONFIRMED and batch.expires_at < now:
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


def confirm_import(*, batch_id: int, today: date, now: datetime, user=None, ip: str | None = None) -> ImportBatch:
    """Create the batch's valid rows through ``create_subscriber``, each in its own
    savepoint: a row refused now (say, its username was taken since the dry run) is
    reported and the others still go in. A batch is confirmed once; again is refused.
    Each subscriber gets its own audit event from ``create_subscriber``; the batch gets
    one ``import.confirm`` event.

    A start date in the past is kept as the subscriber's join date, but billing starts
    on ``today``: months before the import are not invoiced by it.
    """
    with transaction.atomic():
        batch = open_batch(batch_id, now=now)
        batch = ImportBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.status == ImportStatus.CONFIRMED:
            raise DomainError(_("This file has already been imported."), code="import_already_confirmed", status=409)
        if batch.status != ImportStatus.MAPPED:
            raise _refuse(_("Choose the columns and run the dry run first."), "import_not_mapped")
        # Usernames are checked by create_subscriber, row by row, at the moment of creation.
        checked = _check(batch, check_taken=False)
        if not any(r.ok for r in checked):
            raise _refuse(_("No row is valid: nothing to import."), "import_nothing_valid")
        results = []
        for row in checked:
            entry = {"number": row.number, "values": row.values, "status": "failed", "subscriber": None,
                     "errors": _errors(row.errors)}
            if row.ok:
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
            results.append(entry)
        created = sum(1 for e in results if e["status"] == "created")
        batch.status = ImportStatus.CONFIRMED
        batch.confirmed_at = now
        batch.confirmed_by = user if getattr(user, "is_authenticated", False) else None
        batch.created_count = created
        batch.failed_count = len(results) - created
        batch.results = results
        batch.rows = []  # the results keep what the page shows; the raw cells are no longer needed
        batch.save()
        record(
            action="import.confirm", at=now, user=user,
            target=Target("importbatch", batch.pk, batch.file_name[:200]),
            after={"file": batch.file_name, "rows": len(results), "created": created, "failed": len(results) - created},
            ip=ip, summary=_("Imported %(created)d of %(rows)d rows from %(file)s") % {
                "created": created, "rows": len(results), "file": batch.file_name},
        )
    return batch


def recent_imports(limit: int = 10) -> list[ImportBatch]:
    return list(
        ImportBatch.objects.filter(status=ImportStatus.CONFIRMED).select_related("confirmed_by")
        .defer("rows", "results", "headers").order_by("-confirmed_at", "-id")[:limit]
    )
