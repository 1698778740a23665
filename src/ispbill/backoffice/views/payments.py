"""Back-office pages: payments."""

from __future__ import annotations

urlpatterns: list = []
