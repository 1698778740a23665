"""Registers the notifications outbox handler with the worker."""

from ispbill.notifications import services  # noqa: F401  (registers notifications.send)
