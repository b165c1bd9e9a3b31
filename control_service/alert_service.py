"""AlertService: alert rules and alerts over gRPC (and REST through Envoy).

The access interceptor has checked the caller's role before a handler runs; handlers keep a
scoped key to its devices' alerts (others are NOT_FOUND, as if they did not exist).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

import asyncpg
import grpc
from sensormesh.v1 import alert_pb2, alert_pb2_grpc

from control_service.alert_messages import alert_message
from control_service.alerting.rules import check_rule
from control_service.change_watch import ChangeHub, Watcher, changes
from control_service.rule_changes import merged
from control_service.settings import ControlSettings
from sensormesh_core import page_tokens
from sensormesh_core.access.principal import current_caller
from sensormesh_core.errors import FieldViolation, InvalidArgument, NotFound
from sensormesh_core.storage import alert_rules, alerts, registry
from sensormesh_core.storage.alerts import AlertRecord, Notice
from sensormesh_core.validation import validate

log = logging.getLogger(__name__)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
RULE_ID = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class AlertServicer(alert_pb2_grpc.AlertServiceServicer):
    """Validates, calls storage, maps the result; errors map in the interceptor."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        hub: ChangeHub[AlertRecord],
        receivers: Sequence[str],
        settings: ControlSettings,
    ) -> None:
        self._pool = pool
        self._hub = hub
        self._receivers = list(receivers)
        self._settings = settings

    # -- rules --------------------------------------------------------------------------------

    async def CreateAlertRule(
        self, request: alert_pb2.CreateAlertRuleRequest, context: Context
    ) -> alert_pb2.CreateAlertRuleResponse:
        validate(request)
        current_caller().require_unscoped("alert rules")
        caller = current_caller()
        async with self._pool.acquire() as conn:
            await check_rule(conn, request.alert_rule)
            stored = await alert_rules.create(conn, request.alert_rule, caller.actor)
        log.info("event=alert_rule_created rule_id=%s by=%s", stored.rule_id, caller.actor)
        return alert_pb2.CreateAlertRuleResponse(alert_rule=stored.rule)

    async def GetAlertRule(
        self, request: alert_pb2.GetAlertRuleRequest, context: Context
    ) -> alert_pb2.GetAlertRuleResponse:
        validate(request)
        current_caller().require_unscoped("alert rules")
        async with self._pool.acquire() as conn:
            stored = await alert_rules.get(conn, request.rule_id)
        return alert_pb2.GetAlertRuleResponse(alert_rule=stored.rule)

    async def ListAlertRules(
        self, request: alert_pb2.ListAlertRulesRequest, context: Context
    ) -> alert_pb2.ListAlertRulesResponse:
        validate(request)
        current_caller().require_unscoped("alert rules")
        after = None
        if request.page_token:
            after = page_tokens.decode(request.page_token, "alert_rules", {}).get("after")
            if not isinstance(after, str) or RULE_ID.fullmatch(after) is None:
                raise page_tokens.invalid()
        size = request.page_size or 100
        async with self._pool.acquire() as conn:
            stored = await alert_rules.list_rules(conn, after=after, limit=size + 1)
        response = alert_pb2.ListAlertRulesResponse(alert_rules=[s.rule for s in stored[:size]])
        if len(stored) > size:
            response.next_page_token = page_tokens.encode(
                "alert_rules", {}, {"after": stored[size - 1].rule_id}
            )
        return response

    async def UpdateAlertRule(
        self, request: alert_pb2.UpdateAlertRuleRequest, context: Context
    ) -> alert_pb2.UpdateAlertRuleResponse:
        current_caller().require_unscoped("managing alert rules")
        # Only the fields the mask names are the request's: the rule is checked once merged.
        rule_id = request.alert_rule.rule_id
        if len(rule_id) > 63 or RULE_ID.fullmatch(rule_id) is None:
            raise InvalidArgument(
                "invalid alert_rule.rule_id",
                [FieldViolation("alert_rule.rule_id", "1-63 lower-case letters, digits and '-'")],
            )
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await alert_rules.get(conn, rule_id)
            rule, restarts = merged(stored.rule, request)
            validate(alert_pb2.UpdateAlertRuleRequest(alert_rule=rule, update_mask=request.update_mask))
            await check_rule(conn, rule)
            if restarts:
                await alerts.clear_rule(conn, rule.rule_id, "rule changed", _notice(rule), self._receivers)
                await conn.execute("DELETE FROM alert_series_states WHERE rule_id = $1", rule.rule_id)
            updated = await alert_rules.replace(conn, rule)
        log.info("event=alert_rule_updated rule_id=%s restarted=%s", rule.rule_id, restarts)
        return alert_pb2.UpdateAlertRuleResponse(alert_rule=updated.rule)

    async def DeleteAlertRule(
        self, request: alert_pb2.DeleteAlertRuleRequest, context: Context
    ) -> alert_pb2.DeleteAlertRuleResponse:
        validate(request)
        current_caller().require_unscoped("alert rules")
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await alert_rules.get(conn, request.rule_id)
            cleared = await alerts.clear_rule(
                conn, request.rule_id, "rule deleted", _notice(stored.rule), self._receivers
            )
            await alert_rules.delete(conn, request.rule_id)
        log.info("event=alert_rule_deleted rule_id=%s cleared=%d", request.rule_id, cleared)
        return alert_pb2.DeleteAlertRuleResponse(cleared_count=cleared)

    # -- alerts -------------------------------------------------------------------------------

    async def ListAlerts(
        self, request: alert_pb2.ListAlertsRequest, context: Context
    ) -> alert_pb2.ListAlertsResponse:
        validate(request)
        scope = current_caller().scope
        parameters = {
            "states": sorted(int(s) for s in request.states),
            "severities": sorted(int(s) for s in request.severities),
            "device_id": request.device_id,
            "rule_id": request.rule_id,
        }
        before = page_tokens.id_before(request.page_token, "alerts", parameters)
        size = request.page_size or 100
        async with self._pool.acquire() as conn:
            if request.device_id:
                await registry.require_visible(conn, request.device_id, scope)
            found = await alerts.list_alerts(
                conn,
                states=parameters["states"],  # type: ignore[arg-type]
                severities=parameters["severities"],  # type: ignore[arg-type]
                device_id=request.device_id,
                rule_id=request.rule_id,
                before_id=before,
                limit=size + 1,
                scope=scope,
            )
        response = alert_pb2.ListAlertsResponse(alerts=[alert_message(a) for a in found[:size]])
        if len(found) > size:
            response.next_page_token = page_tokens.encode(
                "alerts", parameters, {"before": found[size - 1].alert_id}
            )
        return response

    async def GetAlert(
        self, request: alert_pb2.GetAlertRequest, context: Context
    ) -> alert_pb2.GetAlertResponse:
        validate(request)
        async with self._pool.acquire() as conn:
            record = await alerts.get(conn, request.alert_id, current_caller().scope)
        return alert_pb2.GetAlertResponse(alert=alert_message(record))

    async def AcknowledgeAlert(
        self, request: alert_pb2.AcknowledgeAlertRequest, context: Context
    ) -> alert_pb2.AcknowledgeAlertResponse:
        validate(request)
        caller = current_caller()
        async with self._pool.acquire() as conn, conn.transaction():
            record = await alerts.get(conn, request.alert_id, caller.scope)
            notice = await self._notice_of(conn, record.rule_id)
            record = await alerts.acknowledge(conn, record.alert_id, caller.actor, notice, self._receivers)
        return alert_pb2.AcknowledgeAlertResponse(alert=alert_message(record))

    async def ClearAlert(
        self, request: alert_pb2.ClearAlertRequest, context: Context
    ) -> alert_pb2.ClearAlertResponse:
        validate(request)
        caller = current_caller()
        async with self._pool.acquire() as conn, conn.transaction():
            record = await alerts.get(conn, request.alert_id, caller.scope)
            notice = await self._notice_of(conn, record.rule_id)
            record = await alerts.clear_by_hand(conn, record.alert_id, caller.actor, notice, self._receivers)
        return alert_pb2.ClearAlertResponse(alert=alert_message(record))

    async def WatchAlerts(
        self, request: alert_pb2.WatchAlertsRequest, context: Context
    ) -> AsyncIterator[alert_pb2.WatchAlertsResponse]:
        validate(request)
        scope = current_caller().scope
        severities = {int(s) for s in request.severities}
        device_id = request.device_id
        watcher: Watcher[AlertRecord] = Watcher(
            wants=lambda device, _ident: not device_id or device == device_id,
            row_id=lambda a: a.alert_id,
            version=lambda a: (a.state, a.count),
            scope=scope,
            accepts=lambda a: not severities or a.severity in severities,
        )
        self._hub.subscribe(watcher)
        try:
            if device_id:
                async with self._pool.acquire() as conn:
                    await registry.require_visible(conn, device_id, scope)
            await context.send_initial_metadata(())
            heartbeat = self._settings.alert_watch_heartbeat.total_seconds()
            async for record in changes(watcher, heartbeat, "ListAlerts"):
                yield alert_pb2.WatchAlertsResponse(alert=alert_message(record) if record else None)
        finally:
            self._hub.unsubscribe(watcher)

    async def _notice_of(self, conn: asyncpg.Connection, rule_id: str) -> Notice:
        try:
            return _notice((await alert_rules.get(conn, rule_id)).rule)
        except NotFound:  # the rule was deleted: notify with its id
            return Notice(rule_id, "")


def _notice(rule: alert_pb2.AlertRule) -> Notice:
    return Notice(rule.display_name or rule.rule_id, rule.description)
