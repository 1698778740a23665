from django.apps import AppConfig


class SubscribersConfig(AppConfig):
    name = "ispbill.subscribers"
    label = "subscribers"
