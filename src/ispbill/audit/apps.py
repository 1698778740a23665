from django.apps import AppConfig
from django.db.backends.signals import connection_created


class AuditConfig(AppConfig):
    name = "ispbill.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from ispbill.audit.guard import on_connection_created

        connection_created.connect(on_connection_created, dispatch_uid="ispbill-audit-guard")
