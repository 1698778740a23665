"""Back-office pages: the SMS and email message log."""

from __future__ import annotations

urlpatterns: list = []
