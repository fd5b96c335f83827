"""A fake Stripe API on a loopback port, for the real `stripe` library to talk to.

It implements only what `iotistic.billing.stripe_gateway` calls, the way the real API does it: form-encoded
request bodies with Stripe's bracket notation (`line_items[0][price]=...`), Bearer secret-key auth,
`Idempotency-Key` replay, Stripe-shaped JSON objects and error bodies. State lives in memory; tests move it
along (`complete_checkout`, `update_subscription`) the way a customer paying in Stripe's pages would, and
build the event Stripe would then send (`event`). Signing that event is `tests.fakes.stripe_signing`.

Endpoints: POST /v1/customers, POST /v1/checkout/sessions, GET /v1/checkout/sessions/{id},
GET /v1/subscriptions/{id}, DELETE /v1/subscriptions/{id}.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2026-10-28.endive"
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket notation back to nested data: `a[b][0][c]=v` -> {"a": {"b": [{"c": "v"}]}}."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.fullmatch(raw_key)
        if match is None:
            raise ValueError(f"malformed parameter name {raw_key!r}")
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node: dict[str, Any] = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    """Dicts keyed 0..n-1 are arrays in Stripe's encoding."""
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted) and sorted(map(int, converted)) == list(
            range(len(converted))):
        return [converted[str(i)] for i in range(len(converted))]
    return converted


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]


class StripeApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **({"code": code} if code else {}),
                               **({"param": param} if param else {})}}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class FakeStripe:
    """The server's state and the helpers tests use to act as Stripe and as the paying customer."""

    api_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(16))
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    # Metadata of prices, as set on the Price object in Stripe's dashboard (e.g. {"plan": "starter"}).
    price_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    # Set to make every API call fail with this HTTP status (Stripe being down).
    fail_with: int | None = None
    _idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            stripe = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-stripe", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        with self._lock:
            self.customers.clear()
            self.sessions.clear()
            self.subscriptions.clear()
            self.requests.clear()
            self._idempotent.clear()
            self.price_metadata.clear()
            self.fail_with = None

    def calls(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- what the customer does in Stripe's pages, and what Stripe then does ------------------------------------

    def complete_checkout(self, session_id: str, *, status: str = "active", now: int | None = None
                          ) -> dict[str, Any]:
        """The customer paid: the session completes and its subscription exists. Returns the session."""
        with self._lock:
            session = self.sessions[session_id]
            item = session["_line_items"][0]
            sub = self._new_subscription(
                customer=session["customer"], price=item["price"], quantity=int(item.get("quantity", 1)),
                status=status, metadata=dict(session.get("_subscription_metadata") or {}), now=now,
            )
            session.update(status="complete", payment_status="paid", subscription=sub["id"])
            return _public(session)

    def create_subscription(self, *, customer: str, price: str, status: str = "active",
                            metadata: dict[str, str] | None = None, now: int | None = None) -> dict[str, Any]:
        with self._lock:
            return _public(self._new_subscription(customer=customer, price=price, quantity=1, status=status,
                                                  metadata=metadata or {}, now=now))

    def update_subscription(self, sub_id: str, *, price: str | None = None, status: str | None = None
                            ) -> dict[str, Any]:
        with self._lock:
            sub = self.subscriptions[sub_id]
            if price is not None:
                sub["items"]["data"][0]["price"] = self._price(price)
                sub["items"]["data"][0]["plan"] = _plan(price)
            if status is not None:
                sub["status"] = status
                if status == "canceled":
                    sub["canceled_at"] = sub["ended_at"] = int(time.time())
            return _public(sub)

    def subscription(self, sub_id: str) -> dict[str, Any]:
        with self._lock:
            return _public(self.subscriptions[sub_id])

    def event(self, type_: str, obj: dict[str, Any], *, created: int | None = None,
              event_id: str | None = None) -> dict[str, Any]:
        """The event envelope Stripe POSTs to a webhook endpoint (a snapshot event)."""
        return {
            "id": event_id or _new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created if created is not None else int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }

    def invoice(self, sub_id: str, *, paid: bool) -> dict[str, Any]:
        """An invoice of the subscription, shaped as in current API versions (subscription under `parent`)."""
        with self._lock:
            sub = self.subscriptions[sub_id]
            item = sub["items"]["data"][0]
            return {
                "id": _new_id("in"), "object": "invoice", "customer": sub["customer"],
                "status": "paid" if paid else "open", "amount_due": item["price"]["unit_amount"],
                "amount_paid": item["price"]["unit_amount"] if paid else 0, "currency": "eur",
                "attempt_count": 1, "billing_reason": "subscription_cycle",
                "parent": {"type": "subscription_details",
                           "subscription_details": {"subscription": sub_id, "metadata": dict(sub["metadata"])}},
                "period_start": item["current_period_start"], "period_end": item["current_period_end"],
            }

    # -- the API ------------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
               ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, params, headers))
            if self.fail_with is not None:
                return self.fail_with, {"error": {"type": "api_error", "message": "fake Stripe is failing"},
                                        "_no_retry": True}
            auth = headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                return 401, {"error": {"type": "invalid_request_error",
                                       "message": "Invalid API Key provided: " + auth[7:15] + "****"}}
            key = headers.get("idempotency-key")
            if method == "POST" and key and key in self._idempotent:
                return self._idempotent[key]
            try:
                result = 200, self._route(method, path, params)
            except StripeApiError as exc:
                result = exc.status, exc.body
            if method == "POST" and key:
                self._idempotent[key] = result
            return result

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "customers"]:
            return self._create_customer(params)
        if method == "POST" and parts == ["v1", "checkout", "sessions"]:
            return self._create_session(params)
        if method == "GET" and parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4:
            return _public(self._get(self.sessions, parts[3], "checkout.session"))
        if parts[:2] == ["v1", "subscriptions"] and len(parts) == 3:
            sub = self._get(self.subscriptions, parts[2], "subscription")
            if method == "GET":
                return _public(sub)
            if method == "DELETE":
                if sub["status"] == "canceled":
                    raise StripeApiError(400, "invalid_request_error",
                                         f"A canceled subscription can only update its cancellation_details "
                                         f"and metadata: {sub['id']}")
                sub.update(status="canceled", canceled_at=int(time.time()), ended_at=int(time.time()))
                return _public(sub)
        raise StripeApiError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")

    @staticmethod
    def _get(table: dict[str, dict[str, Any]], object_id: str, what: str) -> dict[str, Any]:
        if object_id not in table:
            raise StripeApiError(404, "invalid_request_error", f"No such {what}: '{object_id}'",
                                 code="resource_missing", param="id")
        return table[object_id]

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        customer_id = _new_id("cus")
        customer = {"id": customer_id, "object": "customer", "created": int(time.time()),
                    "email": params.get("email"), "name": params.get("name"),
                    "metadata": params.get("metadata") or {}, "livemode": False}
        self.customers[customer_id] = customer
        return customer

    def _create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        for required in ("mode", "success_url", "line_items"):
            if not params.get(required):
                raise StripeApiError(400, "invalid_request_error", f"Missing required param: {required}.",
                                     code="parameter_missing", param=required)
        if params["mode"] != "subscription":
            raise StripeApiError(400, "invalid_request_error", "the fake supports mode=subscription only")
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            raise StripeApiError(400, "invalid_request_error", f"No such customer: '{customer}'",
                                 code="resource_missing", param="customer")
        session_id = "cs_test_" + secrets.token_hex(24)
        session = {
            "id": session_id, "object": "checkout.session", "mode": "subscription", "status": "open",
            "payment_status": "unpaid", "customer": customer, "subscription": None,
            "client_reference_id": params.get("client_reference_id"), "metadata": params.get("metadata") or {},
            "success_url": params["success_url"], "cancel_url": params.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}", "created": int(time.time()),
            "expires_at": int(time.time()) + 86400, "livemode": False,
            "_line_items": params["line_items"],
            "_subscription_metadata": (params.get("subscription_data") or {}).get("metadata"),
        }
        self.sessions[session_id] = session
        return _public(session)

    def _price(self, price_id: str) -> dict[str, Any]:
        return {"id": price_id, "object": "price", "active": True, "currency": "eur", "unit_amount": 4900,
                "recurring": {"interval": "month", "interval_count": 1}, "type": "recurring",
                "metadata": dict(self.price_metadata.get(price_id, {})),
                "product": "prod_" + price_id.removeprefix("price_")}

    def _new_subscription(self, *, customer: str, price: str, quantity: int, status: str,
                          metadata: dict[str, str], now: int | None) -> dict[str, Any]:
        start = now if now is not None else int(time.time())
        end = start + 30 * 86400
        sub_id = _new_id("sub")
        sub = {
            "id": sub_id, "object": "subscription", "customer": customer, "status": status,
            "created": start, "start_date": start, "cancel_at_period_end": False, "canceled_at": None,
            "ended_at": None, "metadata": metadata, "livemode": False,
            "items": {"object": "list", "has_more": False, "url": f"/v1/subscription_items?subscription={sub_id}",
                      "data": [{"id": _new_id("si"), "object": "subscription_item", "subscription": sub_id,
                                "quantity": quantity, "price": self._price(price), "plan": _plan(price),
                                "current_period_start": start, "current_period_end": end}]},
        }
        self.subscriptions[sub_id] = sub
        return sub


def _plan(price_id: str) -> dict[str, Any]:
    return {"id": price_id, "object": "plan", "amount": 4900, "currency": "eur", "interval": "month"}


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without the fake's own bookkeeping fields (those start with '_')."""
    copy: dict[str, Any] = json.loads(json.dumps({k: v for k, v in obj.items() if not k.startswith("_")}))
    return copy


class _Handler(BaseHTTPRequestHandler):
    stripe: FakeStripe
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        try:
            params = decode_form(parse_qsl(url.query, keep_blank_values=True) +
                                 parse_qsl(body, keep_blank_values=True))
        except ValueError as exc:
            status, payload = 400, {"error": {"type": "invalid_request_error", "message": str(exc)}}
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = self.stripe.handle(method, url.path, params, headers)
        # Stripe-Should-Retry: false keeps the library from retrying a failure the test asked for (and waiting).
        no_retry = payload.pop("_no_retry", False)
        data = json.dumps(payload).encode()
        self.send_response(status)
        if no_retry:
            self.send_header("Stripe-Should-Retry", "false")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_" + secrets.token_hex(7))
        self.send_header("Stripe-Version", API_VERSION)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return
