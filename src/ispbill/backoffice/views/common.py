"""What every back-office view module shares: the 303 redirect after a POST, form errors
shown as messages, and integer query parameters."""

from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.http import HttpResponseRedirect


class SeeOther(HttpResponseRedirect):
    status_code = 303


def int_param(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


def date_param(params, name: str) -> date | None:
    """A ``YYYY-MM-DD`` query parameter as a date; anything else is None."""
    try:
        return date.fromisoformat((params.get(name) or "").strip())
    except ValueError:
        return None


def form_errors(request, form) -> None:
    """Each form error as an error message, prefixed with its field's label."""
    for field, errors in form.errors.items():
        label = form.fields[field].label or field.replace("_", " ") if field in form.fields else ""
        for error in errors:
            messages.error(request, f"{label.capitalize()}: {error}" if label else error)
