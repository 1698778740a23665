from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "ispbill.notifications"
    label = "notifications"
