from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "ispbill.billing"
    label = "billing"
