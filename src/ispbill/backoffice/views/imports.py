"""Back-office pages: spreadsheet import of subscribers (upload → columns → dry run →
confirm → result) and export of the subscriber list as CSV or XLSX."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from ispbill.backoffice import exports, selectors
from ispbill.backoffice import imports as service
from ispbill.backoffice.forms import client_ip
from ispbill.backoffice.models import ImportStatus
from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.views.common import SeeOther, form_errors
from ispbill.core import clock
from ispbill.core.errors import DomainError, NotFound
from ispbill.core.timeutil import local_date
from ispbill.network.models import Router
from ispbill.plans.models import Package
from ispbill.subscribers.importing import EXTENSIONS, FIELDS, MAX_ROWS

#: The dry run counts every row but lists at most this many.
PREVIEW_ROWS = 1000
#: How often the page of an import in progress reloads itself.
PROGRESS_REFRESH_SECONDS = 3


# -- forms ---------------------------------------------------------------------------------

class MappingForm(forms.Form):
    """One select per field (``map_<field>``: a column index or blank), plus the default
    package and router for rows that name none."""

    default_package = forms.TypedChoiceField(coerce=int, required=False, empty_value=None,
                                             label=gettext_lazy("Default package"))
    default_router = forms.TypedChoiceField(coerce=int, required=False, empty_value=None,
                                            label=gettext_lazy("Default router"))

    def __init__(self, *args, headers=(), **kwargs):
        super().__init__(*args, **kwargs)
        columns = [("", _("— not in the file —")), *((str(i), h) for i, h in enumerate(headers))]
        for f in FIELDS:
            self.fields[f"map_{f.name}"] = forms.TypedChoiceField(
                choices=columns, coerce=int, required=False, empty_value=None, label=f.label,
            )
        self.fields["default_package"].choices = [
            ("", _("— none —")), *Package.objects.filter(is_active=True).order_by("name").values_list("pk", "name")
        ]
        self.fields["default_router"].choices = [("", _("— none —")), *Router.objects.order_by("name").values_list("pk", "name")]

    def mapping_rows(self):
        """(field, its select) pairs in field order, for the template."""
        return [(f, self[f"map_{f.name}"]) for f in FIELDS]

    def mapping(self) -> dict[str, int | None]:
        return {f.name: self.cleaned_data.get(f"map_{f.name}") for f in FIELDS}


# -- helpers -------------------------------------------------------------------------------

def _start_page() -> SeeOther:
    return SeeOther(reverse("backoffice:import"))


def _open(request, batch_id: int):
    """(batch, None), or (None, back to the upload page) when it has expired; 404 when
    there is no such batch."""
    try:
        return service.open_batch(batch_id, now=clock.now()), None
    except NotFound as exc:
        if exc.code == "import_expired":
            messages.error(request, exc.message)
            return None, _start_page()
        raise Http404(exc.message) from None


# -- import --------------------------------------------------------------------------------

@require_safe
@permission_required("import_subscribers")
def import_start(request):
    context = {
        "title": _("Import subscribers"),
        "nav": "imports",
        "fields": FIELDS,
        "max_mb": service.MAX_FILE_BYTES // (1024 * 1024),
        "max_rows": MAX_ROWS,
        "accept": ",".join(EXTENSIONS),
        "recent": service.recent_imports(),
    }
    return render(request, "backoffice/import_upload.html", context)


@require_POST
@permission_required("import_subscribers")
def import_upload(request):
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, _("Choose a .csv or .xlsx file to upload."))
        return _start_page()
    if upload.size > service.MAX_FILE_BYTES:
        messages.error(request, _("The file is larger than %(mb)d MB.") % {"mb": service.MAX_FILE_BYTES // (1024 * 1024)})
        return _start_page()
    try:
        batch = service.start_import(file_name=upload.name, data=upload.read(), now=clock.now(), user=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return _start_page()
    messages.success(request, _("%(file)s: %(rows)d rows read. Check which column holds what.") % {
        "file": batch.file_name, "rows": batch.row_count})
    return SeeOther(reverse("backoffice:import-map", args=[batch.pk]))


@require_http_methods(["GET", "HEAD", "POST"])
@permission_required("import_subscribers")
def import_map(request, batch: int):
    """GET: the column choice, pre-filled by the guess. POST: keep it, then the dry run."""
    found, away = _open(request, batch)
    if away:
        return away
    if found.status in (ImportStatus.IMPORTING, ImportStatus.CONFIRMED):
        return SeeOther(reverse("backoffice:import-result", args=[found.pk]))
    if request.method == "POST":
        form = MappingForm(request.POST, headers=found.headers)
        if not form.is_valid():
            form_errors(request, form)
            return SeeOther(reverse("backoffice:import-map", args=[found.pk]))
        try:
            service.save_mapping(
                batch_id=found.pk, mapping=form.mapping(), default_package=form.cleaned_data["default_package"],
                default_router=form.cleaned_data["default_router"], now=clock.now(),
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            return SeeOther(reverse("backoffice:import-map", args=[found.pk]))
        return SeeOther(reverse("backoffice:import-preview", args=[found.pk]))
    initial = {f"map_{name}": "" if index is None else str(index) for name, index in found.mapping.items()}
    initial.update(default_package=found.default_package_id or "", default_router=found.default_router_id or "")
    form = MappingForm(initial=initial, headers=found.headers)
    context = {
        "title": _("Import: choose the columns"),
        "nav": "imports",
        "batch": found,
        "form": form,
        "sample": found.rows[:3],
    }
    return render(request, "backoffice/import_map.html", context)


@require_safe
@permission_required("import_subscribers")
def import_preview(request, batch: int):
    """The dry run: counts and each row with its errors; nothing is written."""
    found, away = _open(request, batch)
    if away:
        return away
    if found.status in (ImportStatus.IMPORTING, ImportStatus.CONFIRMED):
        return SeeOther(reverse("backoffice:import-result", args=[found.pk]))
    if found.status != ImportStatus.MAPPED:
        return SeeOther(reverse("backoffice:import-map", args=[found.pk]))
    preview = service.preview_import(batch_id=found.pk, now=clock.now())
    only_errors = request.GET.get("only") == "errors"
    rows = [r for r in preview.rows if not r.ok] if only_errors else preview.rows
    context = {
        "title": _("Import: dry run"),
        "nav": "imports",
        "batch": found,
        "preview": preview,
        "rows": rows[:PREVIEW_ROWS],
        "rows_cut": len(rows) > PREVIEW_ROWS,
        "preview_limit": PREVIEW_ROWS,
        "only_errors": only_errors,
        "fields": FIELDS,
    }
    return render(request, "backoffice/import_preview.html", context)


@require_POST
@permission_required("import_subscribers")
def import_confirm(request, batch: int):
    """Import the valid rows; a big file is finished by the worker while its result page
    shows how far it has got."""
    try:
        done = service.confirm_import(batch_id=batch, now=clock.now(), user=request.user, ip=client_ip(request))
    except NotFound as exc:
        if exc.code == "import_expired":
            messages.error(request, exc.message)
            return _start_page()
        raise Http404(exc.message) from None
    except DomainError as exc:
        messages.error(request, exc.message)
        if exc.code in ("import_already_confirmed", "import_in_progress"):
            return SeeOther(reverse("backoffice:import-result", args=[batch]))
        return SeeOther(reverse("backoffice:import-preview", args=[batch]))
    if done.status == ImportStatus.CONFIRMED:
        messages.success(request, _("%(created)d subscribers imported; %(failed)d rows not imported.") % {
            "created": done.created_count, "failed": done.failed_count})
    else:
        messages.info(request, _(
            "%(done)d of %(rows)d rows imported so far; the rest are being imported in the background."
        ) % {"done": done.created_count + done.failed_count, "rows": done.row_count})
    return SeeOther(reverse("backoffice:import-result", args=[done.pk]))


@require_safe
@permission_required("import_subscribers")
def import_result(request, batch: int):
    found, away = _open(request, batch)
    if away:
        return away
    if found.status == ImportStatus.IMPORTING:
        return _import_progress(request, found)
    if found.status != ImportStatus.CONFIRMED:
        return SeeOther(reverse("backoffice:import-map", args=[found.pk]))
    context = {
        "title": _("Import: result"),
        "nav": "imports",
        "batch": found,
        "created": [r for r in found.results if r["status"] == "created"],
        "failed": [r for r in found.results if r["status"] != "created"],
    }
    return render(request, "backoffice/import_result.html", context)


def _import_progress(request, batch):
    """How far an import has got; the page reloads itself until it is done. Once its job
    has stopped without finishing, it offers to carry on."""
    running = service.import_running(batch, now=clock.now())
    context = {
        "title": _("Import: in progress"),
        "nav": "imports",
        "batch": batch,
        "done": batch.created_count + batch.failed_count,
        "running": running,
    }
    response = render(request, "backoffice/import_progress.html", context)
    if running:
        response["Refresh"] = str(PROGRESS_REFRESH_SECONDS)
    return response


# -- export --------------------------------------------------------------------------------

def _filtered_subscribers(request):
    filters = selectors.SubscriberFilters.from_query(request.GET)
    today = local_date(clock.now())
    return selectors.filtered_subscribers(filters, today=today), today


@require_safe
@permission_required("view_subscribers")
def subscribers_export_csv(request):
    queryset, today = _filtered_subscribers(request)
    return exports.csv_response(queryset, exports.SUBSCRIBER_COLUMNS, filename=f"subscribers-{today:%Y-%m-%d}.csv")


@require_safe
@permission_required("view_subscribers")
def subscribers_export_xlsx(request):
    queryset, today = _filtered_subscribers(request)
    return exports.xlsx_response(
        queryset, exports.SUBSCRIBER_COLUMNS, filename=f"subscribers-{today:%Y-%m-%d}.xlsx", title=_("Subscribers"),
    )


urlpatterns: list = [
    path("import/", import_start, name="import"),
    path("import/upload", import_upload, name="import-upload"),
    path("import/<int:batch>/map", import_map, name="import-map"),
    path("import/<int:batch>/preview", import_preview, name="import-preview"),
    path("import/<int:batch>/confirm", import_confirm, name="import-confirm"),
    path("import/<int:batch>/result", import_result, name="import-result"),
    path("subscribers/export.csv", subscribers_export_csv, name="subscribers-export-csv"),
    path("subscribers/export.xlsx", subscribers_export_xlsx, name="subscribers-export-xlsx"),
]
