"""Back-office pages: routers."""

from __future__ import annotations

urlpatterns: list = []
