from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "ispbill.backoffice"
    label = "backoffice"
    verbose_name = "Back office"
