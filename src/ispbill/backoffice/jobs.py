"""Registers the spreadsheet import's outbox handler with the worker."""

from ispbill.backoffice import imports  # noqa: F401  (registers backoffice.import)
