from __future__ import annotations

from django.db import models

from ispbill.core.money import from_paisa


class Package(models.Model):
    """An Internet package an ISP sells: a monthly price and a router profile."""

    name = models.CharField(max_length=100, unique=True)
    price_paisa = models.BigIntegerField()
    rate_limit = models.CharField(max_length=50, blank=True, help_text="e.g. 20M/20M")
    router_profile = models.CharField(max_length=100, blank=True, help_text="PPP profile on the router")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["price_paisa", "name"]
        constraints = [models.CheckConstraint(condition=models.Q(price_paisa__gte=0), name="package_price_not_negative")]

    def __str__(self) -> str:
        return self.name

    @property
    def price(self):
        return from_paisa(self.price_paisa)
