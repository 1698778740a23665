from django.apps import AppConfig


class NetworkConfig(AppConfig):
    name = "ispbill.network"
    label = "network"
