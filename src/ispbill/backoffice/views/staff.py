"""Back-office pages: staff."""

from __future__ import annotations

urlpatterns: list = []
