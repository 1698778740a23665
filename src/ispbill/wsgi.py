import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispbill.settings")
application = get_wsgi_application()


def _batch_webhooks() -> None:
    """A web server process settles concurrent gateway webhooks together."""
    from django.conf import settings

    from ispbill.payments import batching

    batching.enable(settings.ISPBILL_WEBHOOK_BATCH)


_batch_webhooks()
