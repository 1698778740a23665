from django.db import models


class PaymentMethod(models.TextChoices):
    CASH = "cash", "Cash"
    BANK = "bank", "Bank transfer"
    MANUAL_MFS = "manual_mfs", "Mobile money (manual)"


class PaymentStatus(models.TextChoices):
    COMPLETED = "completed", "Completed"

    @property
    def colour(self) -> str:
        return {"completed": "green"}[self.value]
