"""A real ``ispbill web`` (gunicorn): requests for payment links leave ``[token]`` in its
output, never the token (as it is or percent-encoded in a query value), in the access log
and in Django's request warnings; the gateways' return paths stay readable."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from .gateway_support import base_env, free_port, ispbill, start_process, wait_for

TOKEN = "WzcsNDJd:1xWO6X:yboRaVUQQG3hXDcGW_gvRk59RpYXwb_eu1Hb_LBfvhU"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("log-redaction")
    env = base_env(data_dir)
    # With ISPBILL_DEBUG Django's console handler prints the 4xx warnings of django.request.
    env.update(ISPBILL_MODE="development", ISPBILL_DEBUG="1", ISPBILL_WEB_WORKERS="1", ISPBILL_WEB_THREADS="2")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_process(ispbill("web", "--port", str(port)), env=env, cwd=data_dir,
                           log_path=data_dir / "web.log", health_url=base)
    try:
        yield server
    finally:
        server.stop()


def test_payment_link_tokens_never_reach_the_server_log(web):
    with httpx.Client(base_url=web.base_url, timeout=10) as client:
        assert client.get(f"/pay/{TOKEN}").status_code == 404  # not a link this server signed
        assert client.get(f"/pay/{TOKEN}", params={"lang": "bn"}).status_code == 404
        assert client.post(f"/pay/{TOKEN}/start", data={"gateway": "bkash"}).status_code == 403  # no CSRF cookie
        assert client.get("/i18n/setlang/", params={"next": f"/pay/{TOKEN}/start"}).status_code == 302
        assert client.get("/pay/sslcommerz/success").status_code == 405

    wait_for(lambda: "/pay/sslcommerz/success HTTP/1.1\" 405" in web.log, 15, "the access log line of the last request")
    log = web.log
    assert TOKEN not in log and quote(TOKEN, safe="") not in log, log
    assert '"GET /pay/[token] HTTP/1.1" 404' in log, log
    assert '"GET /pay/[token]?lang=bn HTTP/1.1" 404' in log, log
    assert '"POST /pay/[token]/start HTTP/1.1" 403' in log, log
    assert '"GET /i18n/setlang/?next=%2Fpay%2F[token]%2Fstart HTTP/1.1" 302' in log, log
    assert "Not Found: /pay/[token]" in log, log
    assert "Forbidden (CSRF cookie not set.): /pay/[token]/start" in log, log
    assert '"GET /pay/sslcommerz/success HTTP/1.1" 405' in log, log
    assert "Method Not Allowed (GET): /pay/sslcommerz/success" in log, log
