"""Request handling shared by every page."""

from __future__ import annotations

from django.urls import resolve

#: Paths called server to server by the payment gateways (never by a browser).
SERVER_TO_SERVER_PREFIXES = ("/webhooks/",)


class ServerToServerMiddleware:
    """Gateway webhooks go straight to their view, past the browser middleware below
    this one (static files, sessions, language, CSRF, login, messages, framing), which
    they never use: they carry no cookies and are verified by signature. That is about a
    third of a webhook's request handling, paid on every IPN and SNS notification.

    Placed right after ``SecurityMiddleware``, so HTTPS redirects and security headers
    still apply. Errors are turned into responses by the handler as for any view."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path_info.startswith(SERVER_TO_SERVER_PREFIXES):
            return self.get_response(request)
        match = resolve(request.path_info)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)
