"""Where alert notifications go: Prometheus Alertmanager's v2 API, and signed webhooks.

Each receiver turns an outbox payload (the alert after a change, what changed, the rule's name
and description) into one HTTP request; any answer but 2xx, or no answer, is a failure the
dispatcher retries.

Alertmanager gets firing alerts (labels: alertname and rule = the rule's id, device, sensor,
quantity, severity) and, once cleared, the same alert with `endsAt`; an acknowledgement is
sensormesh's own and is not sent (silences are Alertmanager's). Alertmanager resolves an alert
that is not sent again within its resolve_timeout, so the dispatcher sends every active alert
again every minute.

A webhook gets the payload as JSON with `X-Sensormesh-Event` and `X-Sensormesh-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the shared secret>`: a receiver checks
the signature and refuses an old `t`, so a copied request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from sensormesh.v1 import alert_pb2

ALERTMANAGER = "alertmanager:"
WEBHOOK = "webhook:"
SIGNATURE_HEADER = "X-Sensormesh-Signature"
EVENT_HEADER = "X-Sensormesh-Event"


class DeliveryFailed(Exception):
    """The receiver did not take the notification; the message says why."""


class Receiver(Protocol):
    @property
    def name(self) -> str:
        """The receiver's name in the outbox: "alertmanager:<url>" or "webhook:<url>"."""

    async def deliver(self, client: httpx.AsyncClient, payloads: Sequence[dict[str, Any]]) -> None:
        """Send `payloads` (in order); raise DeliveryFailed if the receiver did not take them."""


def severity_name(number: int) -> str:
    return alert_pb2.AlertSeverity.Name(number).removeprefix("ALERT_SEVERITY_").lower()  # type: ignore[arg-type]


@dataclass(frozen=True)
class Alertmanager:
    """An Alertmanager's v2 API at `url` (http://alertmanager:9093)."""

    url: str
    link_base: str

    @property
    def name(self) -> str:
        return ALERTMANAGER + self.url

    def alert(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The payload as an Alertmanager alert; None for a change Alertmanager does not track."""
        if payload["event"] == "acknowledged":
            return None
        a = payload["alert"]
        labels = {
            "alertname": a["rule_id"],
            "rule": a["rule_id"],
            "device": a["device_id"],
            "severity": severity_name(a["severity"]),
            "source": "sensormesh",
        }
        labels |= {k: a[k] for k in ("sensor", "quantity") if a[k]}
        annotations = {
            "summary": a["message"],
            "description": payload.get("rule_description", ""),
            "rule_name": payload.get("rule_name", ""),
            "alert_id": str(a["alert_id"]),
        }
        alert = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": a["first_time"],
            "generatorURL": f"{self.link_base}/v1/alerts/{a['alert_id']}",
        }
        if a["clear_time"]:
            alert["endsAt"] = a["clear_time"]
        return alert

    async def deliver(self, client: httpx.AsyncClient, payloads: Sequence[dict[str, Any]]) -> None:
        alerts = [alert for alert in (self.alert(p) for p in payloads) if alert is not None]
        if not alerts:
            return
        await _post(client, f"{self.url.rstrip('/')}/api/v2/alerts", json.dumps(alerts).encode(), {})


@dataclass(frozen=True)
class Webhook:
    """A URL that takes each notification as signed JSON."""

    url: str
    secret: bytes
    link_base: str

    @property
    def name(self) -> str:
        return WEBHOOK + self.url

    def signed(self, body: bytes, at: int | None = None) -> dict[str, str]:
        """The signature header for `body` at unix time `at` (now)."""
        at = int(time.time()) if at is None else at
        digest = hmac.new(self.secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()
        return {SIGNATURE_HEADER: f"t={at},v1={digest}"}

    async def deliver(self, client: httpx.AsyncClient, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            body = json.dumps(
                {**payload, "link": f"{self.link_base}/v1/alerts/{payload['alert']['alert_id']}"}
            ).encode()
            await _post(client, self.url, body, {EVENT_HEADER: payload["event"], **self.signed(body)})


def verify(
    secret: bytes, body: bytes, header: str, *, max_age: float = 300.0, now: float | None = None
) -> bool:
    """Whether `header` signs `body` with `secret`, made at most `max_age` seconds ago (for
    receivers written in Python, and the tests)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        at = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - at) > max_age:
        return False
    expected = hmac.new(secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> None:
    try:
        response = await client.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}
        )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]}")
