"""Back-office pages: imports."""

from __future__ import annotations

urlpatterns: list = []
