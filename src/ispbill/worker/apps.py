from django.apps import AppConfig


class WorkerConfig(AppConfig):
    name = "ispbill.worker"
    label = "worker"

    def ready(self):
        # Outbox handlers must be registered in every process that may dispatch,
        # including web processes that dispatch right after a commit.
        from ispbill.worker.scheduler import load_job_modules

        load_job_modules()
