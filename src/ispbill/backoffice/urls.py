from django.urls import path

from ispbill.backoffice import views
from ispbill.backoffice.views import audit, imports, invoices, isp_settings, message_log, payments, routers, staff
from ispbill.backoffice.views import branding

app_name = "backoffice"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("subscribers/", views.subscriber_list, name="subscribers"),
    path("subscribers/<int:pk>/", views.subscriber_detail, name="subscriber"),
    path("subscribers/<int:pk>/change-package/preview", views.change_package_preview, name="change-package-preview"),
    path("subscribers/<int:pk>/change-package", views.change_package, name="change-package"),
    path("subscribers/<int:pk>/payments", views.record_payment, name="record-payment"),
    path("subscribers/<int:pk>/status", views.change_status, name="change-status"),
    path("subscribers/<int:pk>/remind", views.send_reminder, name="send-reminder"),
    path("subscribers/<int:pk>/exempt", views.set_exempt, name="set-exempt"),
    # Each feature's pages live in their own module under views/ with their own urlpatterns.
    *invoices.urlpatterns,
    *branding.urlpatterns,
    *payments.urlpatterns,
    *message_log.urlpatterns,
    *routers.urlpatterns,
    *isp_settings.urlpatterns,
    *staff.urlpatterns,
    *audit.urlpatterns,
    *imports.urlpatterns,
]
