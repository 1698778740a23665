from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "ispbill.portal"
    label = "portal"
