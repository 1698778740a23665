from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "ispbill.plans"
    label = "plans"
