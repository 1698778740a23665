"""Back-office pages: the ISP settings."""

from __future__ import annotations

urlpatterns: list = []
