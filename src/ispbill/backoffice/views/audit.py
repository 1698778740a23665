"""Back-office pages: audit."""

from __future__ import annotations

urlpatterns: list = []
