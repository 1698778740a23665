"""Back-office pages: invoices."""

from __future__ import annotations

urlpatterns: list = []
