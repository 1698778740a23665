from django.apps import AppConfig


class WorkerConfig(AppConfig):
    name = "ispbill.worker"
    label = "worker"
