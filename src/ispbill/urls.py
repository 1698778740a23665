from django.contrib import admin
from django.http import JsonResponse
from django.urls import path
from django.views.generic import TemplateView

from ispbill.api.v1 import api
from ispbill.portal import views as portal


def health(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("healthz", health, name="health"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("pay/<str:token>", portal.pay_page, name="pay"),
]
