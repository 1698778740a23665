"""An SSLCommerz (v4) simulator.

Serve it with :func:`ispbill.sim.http.serve_in_thread`; point ``SSLCOMMERZ_BASE_URL`` at
``sim.base_url`` and register stores with ``stores={store_id: password}``.

* ``POST /gwprocess/v4/api.php`` creates a session → ``GatewayPageURL``: a page offering
  Visa, bKash, Nagad and **Rocket** (``card_type="DBBLMOBILEB-Dbbl Mobile Banking"``) with
  **Pay**, **Cancel** and **Fail**. Submitting POSTs the IPN (signed with ``verify_sign``
  and ``verify_sign_sha2``) to ``ipn_url`` and answers the browser with a page whose form
  POSTs the same fields to success_url/fail_url/cancel_url by itself. ``ipn_order``
  chooses "before" (default: the IPN is delivered before the browser is answered),
  "after" (from a thread, shortly after) or "off".
* ``validationserverAPI.php``: VALID the first time, VALIDATED afterwards,
  INVALID_TRANSACTION for unknown val_ids. ``merchantTransIDvalidationAPI.php``: query by
  ``tran_id`` or ``sessionkey``, refund (``bank_tran_id`` + ``refund_amount``) and refund
  status (``refund_ref_id``: ``refunded``, ``processing`` or ``cancelled``).
* ``risky = True`` marks new transactions ``risk_level`` 1.
* ``refunds_complete = False`` leaves new refunds ``processing`` until
  :meth:`finish_refund` makes one ``refunded`` or ``cancelled`` (a cancelled refund's
  amount can be refunded again); by default refunds complete at once.

Failure texts (``failedreason``, ``errorReason``) are the simulator's own wording.
"""

from __future__ import annotations

import hashlib
import html
import secrets
import string
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

import httpx

from ispbill.sim.http import Request, Response, SimApp, auto_post_form, hidden, html_response, json_response, page

DHAKA = timezone(timedelta(hours=6))
METHODS = {
    "visa": {"card_type": "VISA-Dutch Bangla", "card_no": "418117XXXXXX6675", "card_issuer": "DUTCH-BANGLA BANK LIMITED",
             "card_brand": "VISA"},
    "bkash": {"card_type": "BKASH-BKash", "card_no": "", "card_issuer": "BKash Mobile Banking", "card_brand": "MOBILEBANKING"},
    "nagad": {"card_type": "NAGAD-Nagad", "card_no": "", "card_issuer": "Nagad", "card_brand": "MOBILEBANKING"},
    "rocket": {"card_type": "DBBLMOBILEB-Dbbl Mobile Banking", "card_no": "", "card_issuer": "DBBL Mobile Banking",
               "card_brand": "MOBILEBANKING"},
}
_REQUIRED = (
    "store_id", "store_passwd", "total_amount", "currency", "tran_id", "success_url", "fail_url", "cancel_url",
    "cus_name", "cus_email", "cus_add1", "cus_city", "cus_country", "cus_phone", "shipping_method", "product_name",
    "product_category", "product_profile",
)
# The IPN's signed fields, in the order SSLCommerz lists them in verify_key.
_SIGNED = (
    "amount", "bank_tran_id", "base_fair", "card_brand", "card_issuer", "card_issuer_country",
    "card_issuer_country_code", "card_no", "card_type", "currency", "currency_amount", "currency_rate",
    "currency_type", "error", "risk_level", "risk_title", "status", "store_amount", "store_id", "tran_date",
    "tran_id", "val_id", "value_a", "value_b", "value_c", "value_d",
)


def sslcommerz_sign(fields: dict[str, str], keys: list[str], password: str, algorithm: str) -> str:
    """verify_sign (``md5``) / verify_sign_sha2 (``sha256``) as SSLCommerz computes them."""
    digest = getattr(hashlib, algorithm)
    values = {k: fields.get(k, "") for k in keys}
    values["store_passwd"] = digest(password.encode()).hexdigest()
    return digest("&".join(f"{k}={values[k]}" for k in sorted(values)).encode()).hexdigest()


class SslcommerzSimulator(SimApp):
    routes = [
        ("POST", r"/gwprocess/v4/api\.php", "create_session"),
        ("GET", r"/EasyCheckOut/(?P<key>[A-Za-z0-9]+)", "hosted_page"),
        ("POST", r"/EasyCheckOut/(?P<key>[A-Za-z0-9]+)/action", "hosted_action"),
        ("GET", r"/validator/api/validationserverAPI\.php", "validate"),
        ("GET", r"/validator/api/merchantTransIDvalidationAPI\.php", "transaction_api"),
    ]

    def __init__(self, *, stores: dict[str, str] | None = None, ipn_order: str = "before", ipn_timeout: float = 5.0):
        super().__init__()
        self.stores = dict(stores or {"simstore": "simstore@ssl"})
        self.ipn_order = ipn_order
        self.ipn_timeout = ipn_timeout
        self.risky = False
        self.refunds_complete = True
        self.sessions: dict[str, dict] = {}
        self.transactions: list[dict] = []
        self.refunds: dict[str, dict] = {}
        self.ipn_deliveries: list[tuple[str, int | str]] = []  # (url, HTTP status or error name)
        self._state = threading.Lock()

    def __repr__(self) -> str:
        return f"<SslcommerzSimulator {self.base_url or 'unbound'} {len(self.sessions)} session(s)>"

    def transaction(self, tran_id: str) -> dict:
        with self._state:
            return dict(next(t for t in reversed(self.transactions) if t["tran_id"] == tran_id))

    # -- session -----------------------------------------------------------------------------

    def create_session(self, request: Request) -> Response:
        form = request.form()
        if self.stores.get(form.get("store_id", "")) != form.get("store_passwd") or not form.get("store_passwd"):
            return _failed("Store Credential Error Or Store is De-active")
        missing = [k for k in _REQUIRED if not form.get(k, "").strip()]
        if missing:
            return _failed(f"Missing required field(s): {', '.join(missing)}")
        amount = _amount(form["total_amount"])
        if amount is None or not Decimal("10.00") <= amount <= Decimal("500000.00"):
            return _failed("Invalid amount: 10.00 to 500000.00 with at most two decimals")
        if len(form["tran_id"]) > 30:
            return _failed("tran_id must be at most 30 characters")
        if form["currency"] != "BDT":
            return _failed("Invalid currency")
        key = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(32))
        with self._state:
            self.sessions[key] = {**form, "amount": f"{amount:.2f}", "sessionkey": key, "state": "open"}
        url = f"{self.base_url}/EasyCheckOut/{key}"
        return json_response({
            "status": "SUCCESS", "failedreason": "", "sessionkey": key,
            "gw": {"visa": "dbbl_visa", "master": "", "amex": "", "othercards": "", "internetbanking": "",
                   "mobilebanking": "dbblmobilebanking,bkash,nagad"},
            "redirectGatewayURL": url, "directPaymentURLBank": "", "directPaymentURLCard": "", "directPaymentURL": "",
            "redirectGatewayURLFailed": "", "GatewayPageURL": url, "storeBanner": "", "storeLogo": "",
            "store_name": "Simulated ISP", "desc": [], "is_direct_pay_enable": "0",
        })

    def hosted_page(self, request: Request, key: str) -> Response:
        with self._state:
            session = self.sessions.get(key)
        if session is None:
            return html_response(page("SSLCommerz", "<p>Unknown session.</p>"), 404)
        if session["state"] != "open":
            return html_response(page("SSLCommerz", "<p>This session is closed.</p>"), 409)
        options = "".join(
            f"<label><input type='radio' name='method' value='{m}'{' checked' if m == 'visa' else ''}> {html.escape(m)}</label>"
            for m in METHODS
        )
        form = (
            f"<p>Pay BDT {html.escape(session['amount'])} to {html.escape(session['store_id'])}.</p>"
            f"<form method='post' action='/EasyCheckOut/{key}/action'>" + hidden("sessionkey", key) + options
            + "<button type='submit' name='action' value='pay'>Pay</button>"
            "<button type='submit' name='action' value='cancel'>Cancel</button>"
            "<button type='submit' name='action' value='fail'>Fail</button></form>"
        )
        return html_response(page("SSLCommerz Checkout", form))

    def hosted_action(self, request: Request, key: str) -> Response:
        form = request.form()
        with self._state:
            session = self.sessions.get(key)
            if session is None or session["state"] != "open":
                return html_response(page("SSLCommerz", "<p>This session is closed.</p>"), 409)
            action = form.get("action")
            method = METHODS.get(form.get("method", "visa"), METHODS["visa"])
            now = datetime.now(DHAKA)
            fields = {
                "tran_id": session["tran_id"], "amount": session["amount"], "currency": "BDT",
                "tran_date": now.strftime("%Y-%m-%d %H:%M:%S"), "store_id": session["store_id"],
                "currency_type": "BDT", "currency_amount": session["amount"], "currency_rate": "1.0000",
                "base_fair": "0.00", "card_issuer_country": "Bangladesh", "card_issuer_country_code": "BD",
                **{v: session.get(v, "") for v in ("value_a", "value_b", "value_c", "value_d")},
            }
            if action == "pay":
                risky = self.risky
                fields.update(
                    status="VALID", val_id=now.strftime("%y%m%d%H%M%S") + secrets.token_hex(6),
                    bank_tran_id=now.strftime("%y%m%d%H%M%S") + "".join(secrets.choice(string.digits) for _ in range(8)),
                    store_amount=f"{Decimal(session['amount']) * Decimal('0.975'):.2f}", error="",
                    risk_level="1" if risky else "0", risk_title="Risky" if risky else "Safe", **method,
                )
                target, state = session["success_url"], "paid"
            else:
                failed = action == "fail"
                fields.update(
                    status="FAILED" if failed else "CANCELLED", val_id="", bank_tran_id="", store_amount="0.00",
                    error="Declined by the issuer" if failed else "Cancelled by the customer", risk_level="0",
                    risk_title="Safe", **(method if failed else {"card_type": "", "card_no": "", "card_issuer": "", "card_brand": ""}),
                )
                target, state = (session["fail_url"] if failed else session["cancel_url"]), ("failed" if failed else "cancelled")
            session["state"] = state
            self.transactions.append({**fields, "sessionkey": key, "validations": 0, "refunded": Decimal(0)})
            password = self.stores[session["store_id"]]
            ipn_url = session.get("ipn_url", "")
        keys = [k for k in _SIGNED if k in fields]
        signed = {
            **fields, "verify_key": ",".join(keys),
            "verify_sign": sslcommerz_sign(fields, keys, password, "md5"),
            "verify_sign_sha2": sslcommerz_sign(fields, keys, password, "sha256"),
        }
        if ipn_url and self.ipn_order == "before":
            self._deliver_ipn(ipn_url, signed)
        elif ipn_url and self.ipn_order == "after":
            threading.Thread(target=self._deliver_ipn, args=(ipn_url, signed, 0.2), daemon=True).start()
        return html_response(auto_post_form(target, signed))

    def _deliver_ipn(self, url: str, fields: dict[str, str], delay: float = 0.0) -> None:
        if delay:
            time.sleep(delay)
        try:
            outcome: int | str = httpx.post(url, data=fields, timeout=self.ipn_timeout).status_code
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        with self._state:
            self.ipn_deliveries.append((url, outcome))

    # -- server-to-server APIs ---------------------------------------------------------------

    def validate(self, request: Request) -> Response:
        q = request.query
        if not self._credentials_ok(q):
            return json_response({"APIConnect": "INVALID_REQUEST", "status": "INVALID_TRANSACTION"})
        with self._state:
            txn = next((t for t in self.transactions if t["val_id"] and t["val_id"] == q.get("val_id")), None)
            if txn is None or txn["store_id"] != q.get("store_id"):
                return json_response({"APIConnect": "DONE", "status": "INVALID_TRANSACTION"})
            txn["validations"] += 1
            status = "VALID" if txn["validations"] == 1 else "VALIDATED"
            txn.setdefault("validated_on", datetime.now(DHAKA).strftime("%Y-%m-%d %H:%M:%S"))
            return json_response({**_public(txn), "status": status, "APIConnect": "DONE", "gw_version": "sim"})

    def transaction_api(self, request: Request) -> Response:
        q = request.query
        if not self._credentials_ok(q):
            return json_response({"APIConnect": "INVALID_REQUEST", "status": "FAILED", "errorReason": "Store credential error"})
        if q.get("refund_ref_id"):
            return self._refund_status(q)
        if q.get("bank_tran_id") and q.get("refund_amount"):
            return self._refund(q)
        with self._state:
            mine = [t for t in self.transactions if t["store_id"] == q.get("store_id")]
            if q.get("tran_id"):
                found = [_element(t) for t in mine if t["tran_id"] == q["tran_id"]]
                return json_response({"APIConnect": "DONE", "no_of_trans_found": len(found), "element": found})
            if q.get("sessionkey"):
                found = [t for t in mine if t["sessionkey"] == q["sessionkey"]]
                if not found:
                    return json_response({"APIConnect": "DONE", "status": "PENDING", "sessionkey": q["sessionkey"]})
                return json_response({**_element(found[-1]), "APIConnect": "DONE", "sessionkey": q["sessionkey"]})
        return json_response({"APIConnect": "INVALID_REQUEST", "status": "FAILED", "errorReason": "Nothing to look up"})

    def _refund(self, q: dict[str, str]) -> Response:
        amount = _amount(q.get("refund_amount", ""))
        with self._state:
            txn = next((t for t in self.transactions if t["bank_tran_id"] and t["bank_tran_id"] == q["bank_tran_id"]), None)
            if txn is None or txn["status"] != "VALID" or txn["store_id"] != q.get("store_id"):
                return json_response({"APIConnect": "DONE", "status": "failed", "errorReason": "Invalid bank_tran_id"})
            if amount is None or amount + txn["refunded"] > Decimal(txn["amount"]):
                return json_response({"APIConnect": "DONE", "status": "failed", "errorReason": "Invalid refund amount"})
            if not q.get("refund_remarks"):
                return json_response({"APIConnect": "DONE", "status": "failed", "errorReason": "refund_remarks required"})
            txn["refunded"] += amount
            ref = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
            now = datetime.now(DHAKA).strftime("%Y-%m-%d %H:%M:%S")
            done = self.refunds_complete
            self.refunds[ref] = {
                "bank_tran_id": txn["bank_tran_id"], "tran_id": txn["tran_id"], "refund_ref_id": ref,
                "amount": f"{amount:.2f}", "initiated_on": now, "refunded_on": now if done else "",
                "status": "refunded" if done else "processing",
            }
        return json_response({
            "APIConnect": "DONE", "bank_tran_id": txn["bank_tran_id"], "trans_id": txn["tran_id"],
            "refund_ref_id": ref, "status": "success", "errorReason": "",
        })

    def _refund_status(self, q: dict[str, str]) -> Response:
        with self._state:
            refund = dict(self.refunds.get(q["refund_ref_id"]) or {})
        if not refund:
            return json_response({"APIConnect": "DONE", "status": "failed", "errorReason": "Invalid refund_ref_id"})
        reason = "Refund request cancelled by the bank" if refund["status"] == "cancelled" else ""
        return json_response({"APIConnect": "DONE", **refund, "errorReason": reason})

    def finish_refund(self, refund_ref_id: str, status: str = "refunded") -> None:
        """Settle a ``processing`` refund: ``refunded``, or ``cancelled`` (the money stays
        with the merchant, and may be refunded again)."""
        if status not in ("refunded", "cancelled"):
            raise ValueError("a refund finishes as 'refunded' or 'cancelled'")
        with self._state:
            refund = self.refunds[refund_ref_id]
            if refund["status"] != "processing":
                raise ValueError(f"refund {refund_ref_id} is already {refund['status']}")
            refund["status"] = status
            if status == "refunded":
                refund["refunded_on"] = datetime.now(DHAKA).strftime("%Y-%m-%d %H:%M:%S")
            else:
                txn = next(t for t in self.transactions if t["bank_tran_id"] == refund["bank_tran_id"])
                txn["refunded"] -= Decimal(refund["amount"])

    def _credentials_ok(self, q: dict[str, str]) -> bool:
        password = self.stores.get(q.get("store_id", ""))
        return bool(password) and q.get("store_passwd") == password


def _failed(reason: str) -> Response:
    return json_response({"status": "FAILED", "failedreason": reason, "sessionkey": "", "GatewayPageURL": ""})


def _amount(text: str) -> Decimal | None:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        return None
    return amount


def _public(txn: dict) -> dict:
    return {k: v for k, v in txn.items() if k not in {"sessionkey", "validations", "refunded"}}


def _element(txn: dict) -> dict:
    status = txn["status"]
    if status == "VALID" and txn["validations"]:
        status = "VALIDATED"
    return {**_public(txn), "status": status}

