from django.apps import AppConfig


class DunningConfig(AppConfig):
    name = "ispbill.dunning"
    label = "dunning"
