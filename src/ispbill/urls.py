from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path

from ispbill.api.v1 import api
from ispbill.backoffice import views as backoffice
from ispbill.payments import views as payments
from ispbill.portal import views as portal
from ispbill.portal import captive


def health(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("", backoffice.home, name="home"),
    path("office/", include("ispbill.backoffice.urls")),
    # Django's set_language view (POST language + next), at /i18n/setlang/.
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", health, name="health"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("pay/<str:token>", portal.pay_page, name="pay"),
    # Gateway payments: the paths are contracts with the gateways (and their merchant panels).
    path("pay/bkash/callback", portal.bkash_callback, name="pay-bkash-callback"),
    path("pay/nagad/callback", portal.nagad_callback, name="pay-nagad-callback"),
    re_path(r"^pay/sslcommerz/(?P<result>success|fail|cancel)$", portal.sslcommerz_return, name="pay-sslcommerz-return"),
    path("pay/<str:token>/start", portal.start_payment, name="pay-start"),
    path("webhooks/sslcommerz/ipn", payments.sslcommerz_ipn, name="webhook-sslcommerz-ipn"),
    path("webhooks/bkash", payments.bkash_sns, name="webhook-bkash"),
    path("portal", captive.captive_page, name="captive"),
    path("portal/", captive.captive_page),
]
