"""Django settings, read from the environment.

Variables: DATABASE_URL, ISPBILL_TIME_ZONE, ISPBILL_PUBLIC_URL, SECRET_KEY,
ISPBILL_MODE (``development`` by default, ``production`` requires SECRET_KEY),
ISPBILL_DATA_DIR (where the embedded database and generated secret live),
ISPBILL_ALLOWED_HOSTS (comma-separated).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("ISPBILL_DATA_DIR", os.getcwd())).resolve()

MODE = os.environ.get("ISPBILL_MODE", "development").strip().lower()
if MODE not in {"development", "production"}:
    raise ImproperlyConfigured("ISPBILL_MODE must be 'development' or 'production'")
PRODUCTION = MODE == "production"


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "").strip()
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when ISPBILL_MODE=production")
    # The embedded default keeps one generated key beside the database so sessions
    # and signed links survive restarts.
    path = DATA_DIR / ".ispbill-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


SECRET_KEY = _secret_key()
DEBUG = not PRODUCTION and os.environ.get("ISPBILL_DEBUG", "0") == "1"
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ISPBILL_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()
]
if not PRODUCTION:
    ALLOWED_HOSTS.append("*")

ISPBILL_TIME_ZONE = os.environ.get("ISPBILL_TIME_ZONE", "Asia/Dhaka")
ISPBILL_PUBLIC_URL = os.environ.get("ISPBILL_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ispbill.core",
    "ispbill.plans",
    "ispbill.subscribers",
    "ispbill.billing",
    "ispbill.payments",
    "ispbill.worker",
    "ispbill.dunning",
    "ispbill.notifications",
    "ispbill.portal",
    "ispbill.network",
    "ispbill.api",
    "ispbill.backoffice",
    "ispbill.audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Gateway webhooks skip the browser middleware below (see the class).
    "ispbill.core.middleware.ServerToServerMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before common: the language comes from the cookie set by the
    # switcher (or the browser's Accept-Language), English otherwise.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ispbill.urls"
WSGI_APPLICATION = "ispbill.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict:
    url = os.environ.get("DATABASE_URL", "").strip() or f"sqlite:///{DATA_DIR / 'ispbill.sqlite3'}"
    db = dj_database_url.parse(url, conn_max_age=0 if url.startswith("sqlite") else 60)
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db["OPTIONS"] = {
            # WAL lets readers run beside the single writer; IMMEDIATE takes the write
            # lock at BEGIN so concurrent writers queue instead of failing mid-transaction.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    elif db["ENGINE"] == "django.db.backends.postgresql":
        db["CONN_HEALTH_CHECKS"] = True
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("bn", "বাংলা")]
# Compiled catalogs (.mo) ship in the package: installing needs no gettext.
LOCALE_PATHS = [BASE_DIR / "locale"]
# The switcher's choice outlives the (browser-session) staff login.
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SECURE = PRODUCTION
TIME_ZONE = ISPBILL_TIME_ZONE
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Set ISPBILL_STATIC_ROOT to collect static files for a separate web server; by default
# the app serves them itself.
STATIC_ROOT = os.environ.get("ISPBILL_STATIC_ROOT") or None
# Static files are served by the app itself (no separate web server needed).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 8 * 3600
# Staff sessions end with the browser or after a working day, whichever comes first.
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
LOGIN_URL = "backoffice:login"
LOGIN_REDIRECT_URL = "backoffice:dashboard"
LOGOUT_REDIRECT_URL = "backoffice:login"
# The dashboard's sums of earlier days' payments are reused for this long (today's are
# always fresh).
ISPBILL_DASHBOARD_CACHE_SECONDS = int(os.environ.get("ISPBILL_DASHBOARD_CACHE_SECONDS", "300"))
# Gateway webhooks arriving together in one web server process are settled together, at
# most this many per transaction (1: each in its own transaction). See payments/batching.py.
ISPBILL_WEBHOOK_BATCH = int(os.environ.get("ISPBILL_WEBHOOK_BATCH", "32") or "32")
# What the SMS provider charges per segment, in taka (for the cost shown on the messages
# page; a Decimal string, e.g. "0.35").
ISPBILL_SMS_SEGMENT_PRICE = os.environ.get("ISPBILL_SMS_SEGMENT_PRICE", "0.35")
# Staff login throttling: this many failures per username and address within the window.
ISPBILL_LOGIN_MAX_FAILURES = int(os.environ.get("ISPBILL_LOGIN_MAX_FAILURES", "5"))
ISPBILL_LOGIN_WINDOW_SECONDS = int(os.environ.get("ISPBILL_LOGIN_WINDOW_SECONDS", str(15 * 60)))
CSRF_COOKIE_HTTPONLY = False
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Payment-link tokens (/pay/<token>) are replaced by "[token]" wherever a request path is logged.
    "filters": {
        "redact_payment_links": {"()": "ispbill.core.logs.RedactPaymentLinks"},
        "require_debug_true": {"()": "django.utils.log.RequireDebugTrue"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_payment_links"]},
        # Django's own handlers (django.utils.log.DEFAULT_LOGGING), declared again so that what
        # any django.* logger prints passes the filter, not only what the loggers below log.
        "django.console": {
            "class": "logging.StreamHandler", "level": "INFO", "filters": ["require_debug_true", "redact_payment_links"],
        },
        # With DEBUG off Django prints nothing of its own, not even a view's unhandled
        # exception (it would only mail ADMINS): errors and their tracebacks go to the console.
        "django.errors": {
            "class": "logging.StreamHandler", "level": "ERROR", "formatter": "plain",
            "filters": ["require_debug_false", "redact_payment_links"],
        },
        "django.mail_admins": {
            "class": "django.utils.log.AdminEmailHandler", "level": "ERROR", "filters": ["require_debug_false"],
        },
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server", "level": "INFO"},
    },
    "loggers": {
        "ispbill": {"handlers": ["console"], "level": os.environ.get("ISPBILL_LOG_LEVEL", "INFO")},
        "django": {"handlers": ["django.console", "django.errors", "django.mail_admins"], "level": "INFO"},
        # Filters only: these keep Django's handlers, levels and propagation, and the records
        # reach any other handler (the root logger's, a test's) already masked.
        "django.request": {"filters": ["redact_payment_links"]},
        "django.security.csrf": {"filters": ["redact_payment_links"]},
        # Configuring a logger replaces its handlers, so runserver's is declared again as Django has it.
        "django.server": {
            "handlers": ["django.server"], "level": "INFO", "propagate": False, "filters": ["redact_payment_links"],
        },
        # Request URLs, which an SMS provider's query (a reminder's text, its link encoded) may hold.
        "httpx": {"filters": ["redact_payment_links"]},
    },
}

# Email (Django's standard settings, read from the environment). Without EMAIL_HOST,
# mail is written to the console instead of being sent.
def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in {"1", "true", "yes", "on"}


_EMAIL_HOST = os.environ.get("EMAIL_HOST", "").strip()
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "").strip() or (
    "django.core.mail.backends.smtp.EmailBackend" if _EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = _EMAIL_HOST or "localhost"
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "").strip() or "25")
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_flag("EMAIL_USE_TLS")
EMAIL_USE_SSL = _env_flag("EMAIL_USE_SSL")
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("set EMAIL_USE_TLS (STARTTLS, port 587) or EMAIL_USE_SSL (port 465), not both")
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "").strip() or "15")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "").strip() or "ispbill <billing@localhost>"

# Outbox dispatcher defaults (seconds unless stated).
ISPBILL_DISPATCH_THREADS = max(1, int(os.environ.get("ISPBILL_DISPATCH_THREADS", "8")))
ISPBILL_OUTBOX_LEASE_SECONDS = int(os.environ.get("ISPBILL_OUTBOX_LEASE_SECONDS", "120"))
ISPBILL_OUTBOX_MAX_ATTEMPTS = int(os.environ.get("ISPBILL_OUTBOX_MAX_ATTEMPTS", "8"))
ISPBILL_OUTBOX_BACKOFF_BASE = int(os.environ.get("ISPBILL_OUTBOX_BACKOFF_BASE", "30"))
ISPBILL_OUTBOX_BACKOFF_MAX = int(os.environ.get("ISPBILL_OUTBOX_BACKOFF_MAX", "3600"))

# Routers the reconcile job talks to at once (one thread and database connection each),
# so that routers which do not answer delay no others.
ISPBILL_RECONCILE_CONCURRENCY = max(1, int(os.environ.get("ISPBILL_RECONCILE_CONCURRENCY", "").strip() or "4"))
