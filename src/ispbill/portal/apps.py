from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "ispbill.portal"
    label = "portal"

    def ready(self):
        from ispbill.portal.limits import configured_limits

        # A mistyped ISPBILL_PAY_START_LIMIT stops the server starting, not a customer's payment.
        configured_limits()
