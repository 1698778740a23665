from django.urls import path

from ispbill.backoffice import views

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
]
