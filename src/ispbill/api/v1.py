"""REST API v1: ``/api/v1``; OpenAPI at ``/api/v1/openapi.json``."""

from __future__ import annotations

from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from ispbill.api import tokens
from ispbill.core.errors import DomainError


class BearerToken(HttpBearer):
    """A token stands for its user: routes see ``request.user`` and check that user's
    role with :func:`ispbill.api.permissions.require_permission`."""

    def authenticate(self, request, token):
        user = tokens.user_for_token(token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="ispbill API",
    version="1",
    urls_namespace="api-v1",
    auth=BearerToken(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def _error(request, status: int, code: str, message: str, **extra):
    return api.create_response(request, {"code": code, "message": message, **extra}, status=status)


@api.exception_handler(DomainError)
def domain_error(request, exc: DomainError):
    extra = {"field": exc.field} if exc.field else {}
    return _error(request, exc.status, exc.code, exc.message, **extra)


@api.exception_handler(ValidationError)
def validation_error(request, exc: ValidationError):
    errors = []
    for err in exc.errors:
        loc = [str(p) for p in err.get("loc", []) if p not in ("body", "payload", "query", "path")]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        errors.append({"field": ".".join(loc), "message": message})
    summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors) or "invalid input"
    return _error(request, 422, "invalid_input", summary, errors=errors)


@api.exception_handler(AuthenticationError)
def auth_error(request, exc):
    return _error(request, 401, "unauthorized", "send a valid API token: Authorization: Bearer <token>")


@api.exception_handler(Http404)
def not_found(request, exc):
    return _error(request, 404, "not_found", str(exc) or "not found")


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return _error(request, exc.status_code, code, str(exc))


from ispbill.api import invoices, messages, packages, payments, settings, subscribers  # noqa: E402

api.add_router("/packages", packages.router)
api.add_router("/subscribers", subscribers.router)
api.add_router("/invoices", invoices.router)
api.add_router("/credit-notes", invoices.credit_notes)
api.add_router("/payments", payments.router)
api.add_router("/settings", settings.router)
api.add_router("/messages", messages.router)
api.add_router("/message-templates", messages.templates)

from ispbill.api import webhooks  # noqa: E402

api.add_router("/webhooks", webhooks.router)

from ispbill.api import routers  # noqa: E402

api.add_router("/routers", routers.router)

from ispbill.api import audit  # noqa: E402

api.add_router("/audit", audit.router)
