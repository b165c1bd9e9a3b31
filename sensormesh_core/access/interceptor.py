"""One server interceptor that enforces every RPC's access rule.

For each call it reads the rule the contract declares for the method
(`sensormesh_core.access.rules`), takes the bearer credential from the
call's metadata, authenticates it with the kind the rule asks for (a device
token, or an operator API key), checks the role, sets the caller for the
handler (`current_caller()`), and, for rules marked `audit`, records the
outcome. Refusals are raised as `sensormesh_core.errors` exceptions, which
the ErrorMappingInterceptor (placed before this one) turns into statuses:

- no credential, or one that matches nothing: UNAUTHENTICATED;
- a revoked or expired key: UNAUTHENTICATED saying which;
- a key whose role is below the rule's: PERMISSION_DENIED naming the role;
- a device token where an operator is needed, or a key where a device is:
  PERMISSION_DENIED.

With `forwarded` given (SENSORMESH_TRUST_FORWARDED_IDENTITY), an operator
call that carries the identity Envoy verified and forwarded
(`sensormesh_core.access.forwarded`) is that single sign-on identity, whatever
its bearer; without it the header is ignored, and a bearer JWT is an unknown
credential (UNAUTHENTICATED).

Streams are checked again every `recheck_interval` seconds while they run,
so a live feed or an upload stream opened with a credential that is later
revoked, rotated or disabled ends (with the refusal's status) within
`recheck_interval` plus the credential cache's time to live.

Health checking and reflection pass untouched (see `rules.OPEN_SERVICES`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from sensormesh_core.access.audit_log import ANONYMOUS, AuditLog
from sensormesh_core.access.forwarded import ForwardedIdentity
from sensormesh_core.access.principal import ROLE_NAMES, Principal, set_caller
from sensormesh_core.access.rules import Rule, is_open, rules_for
from sensormesh_core.errors import PermissionDenied, SensormeshError, Unauthenticated
from sensormesh_core.tokens import bearer_token, is_api_key, is_device_token

log = logging.getLogger(__name__)

Behavior = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a call presents: its bearer, and the identity Envoy forwarded (when trusted)."""

    bearer: str | None
    forwarded: str | None = None


class Authenticator(Protocol):
    """Turns one kind of bearer credential into a principal, or raises."""

    async def authenticate(self, credential: str) -> Principal: ...


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Enforces the access rules of `services` on a `grpc.aio` server."""

    def __init__(
        self,
        services: Iterable[str],
        *,
        devices: Authenticator | None = None,
        keys: Authenticator | None = None,
        audit: AuditLog | None = None,
        forwarded: ForwardedIdentity | None = None,
        recheck_interval: float = 5.0,
    ) -> None:
        self._rules = rules_for(services)
        self._devices = devices
        self._keys = keys
        self._forwarded = forwarded
        self._audit = audit
        self._recheck_interval = recheck_interval
        for rule in self._rules.values():
            self._check_wiring(rule)

    def _check_wiring(self, rule: Rule) -> None:
        """Fail at start-up, not at the first call, if a rule cannot be enforced here."""
        if rule.device and self._devices is None:
            raise ValueError(f"{rule.method} takes a device token, but this server checks none")
        if not rule.device and self._keys is None:
            raise ValueError(f"{rule.method} needs an operator role, but this server checks no API keys")
        if rule.audit and self._audit is None:
            raise ValueError(f"{rule.method} is audited, but this server has no audit log")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open(method):
            return handler
        rule = self._rules.get(method)
        if rule is None:  # a service registered without being named: refuse rather than leave it open
            rule = Rule(method.lstrip("/"), role=max(ROLE_NAMES), device=False, audit=False, streaming=False)
            log.error("event=access_rule_missing method=%s (only admins may call it)", method)
        return _rewrap(handler, lambda behavior, streaming: self._guard(rule, behavior, streaming))

    def _guard(self, rule: Rule, behavior: Behavior, streaming_response: bool) -> Behavior:
        if streaming_response and inspect.isasyncgenfunction(behavior):

            async def guarded_stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                credentials, _ = await self._admit(rule, request, context)
                async with _StreamWatch(self, rule, credentials) as watch:
                    try:
                        async for response in behavior(request, context):
                            yield response
                    except asyncio.CancelledError:
                        watch.raise_if_revoked()
                        raise

            return guarded_stream

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            credentials, principal = await self._admit(rule, request, context)
            try:
                if rule.streaming:
                    async with _StreamWatch(self, rule, credentials) as watch:
                        try:
                            result = await behavior(request, context)
                        except asyncio.CancelledError:
                            watch.raise_if_revoked()
                            raise
                else:
                    result = await behavior(request, context)
            except BaseException as exc:
                await self._record(rule, principal.actor, request, exc)
                raise
            await self._record(rule, principal.actor, request, None)
            return result

        return guarded

    async def _admit(
        self, rule: Rule, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Credentials, Principal]:
        """Authenticate and authorize the call, set its caller; audit a refusal."""
        metadata = context.invocation_metadata()
        credentials = Credentials(
            bearer_token(metadata), self._forwarded.header(metadata) if self._forwarded else None
        )
        actor = ANONYMOUS
        try:
            principal = await self.identify(rule, credentials)
            actor = principal.actor
            self.authorize(rule, principal)
        except SensormeshError as exc:
            log.info("event=access_refused method=%s actor=%s reason=%s", rule.method, actor, exc.reason)
            await self._record(rule, actor, request, exc)
            raise
        set_caller(principal)
        return credentials, principal

    async def identify(self, rule: Rule, credentials: Credentials) -> Principal:
        """The principal behind `credentials`, authenticated with the kind `rule` takes."""
        if rule.device:
            return await self._identify_device(rule, credentials.bearer)
        if credentials.forwarded is not None and self._forwarded is not None:
            return self._forwarded.principal(credentials.forwarded)
        return await self._identify_operator(rule, credentials.bearer)

    async def _identify_device(self, rule: Rule, credential: str | None) -> Principal:
        if credential is None:
            raise Unauthenticated("missing `authorization: Bearer <device token>` metadata")
        if is_api_key(credential):
            raise PermissionDenied(
                f"{rule.method} takes the device's own token (smdt_...), not an operator API key",
                reason="DEVICE_TOKEN_REQUIRED",
            )
        assert self._devices is not None
        if not is_device_token(credential):
            raise Unauthenticated("unknown device token")
        return await self._devices.authenticate(credential)

    async def _identify_operator(self, rule: Rule, credential: str | None) -> Principal:
        if credential is None:
            raise Unauthenticated(
                f"missing `authorization: Bearer <API key>` metadata: {rule.method} needs {rule.needs}"
            )
        if is_device_token(credential):
            raise PermissionDenied(
                f"a device token cannot call {rule.method}: it needs an operator API key with {rule.needs}",
                reason="OPERATOR_KEY_REQUIRED",
            )
        assert self._keys is not None
        if not is_api_key(credential):
            raise Unauthenticated("unknown API key", reason="API_KEY_UNKNOWN")
        return await self._keys.authenticate(credential)

    @staticmethod
    def authorize(rule: Rule, principal: Principal) -> None:
        """Raise PermissionDenied unless `principal` may call the rule's RPC."""
        if rule.device or principal.has_role(rule.role):
            return
        raise PermissionDenied(
            f"{rule.method} needs {rule.needs}; {principal.actor} has the {principal.role_name} role",
            reason="ROLE_REQUIRED",
        )

    async def _record(self, rule: Rule, actor: str, request: Any, error: BaseException | None) -> None:
        if rule.audit and self._audit is not None:
            await self._audit.record(actor, rule.method, request, error)

    @property
    def recheck_interval(self) -> float:
        return self._recheck_interval


class _StreamWatch:
    """While a stream runs, re-check its credential; cancel the stream if it stops being valid."""

    def __init__(self, interceptor: AccessInterceptor, rule: Rule, credentials: Credentials) -> None:
        self._interceptor = interceptor
        self._rule = rule
        self._credentials = credentials
        self._refusal: SensormeshError | None = None
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _StreamWatch:
        self._task = asyncio.current_task()
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._watcher is not None
        self._watcher.cancel()

    def raise_if_revoked(self) -> None:
        """Inside the stream's `except CancelledError`: turn our own cancellation into the refusal."""
        if self._refusal is None:
            return
        assert self._task is not None
        self._task.uncancel()
        raise self._refusal

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interceptor.recheck_interval)
            try:
                principal = await self._interceptor.identify(self._rule, self._credentials)
                self._interceptor.authorize(self._rule, principal)
            except SensormeshError as exc:
                log.info("event=stream_credential_ended method=%s reason=%s", self._rule.method, exc.reason)
                self._refusal = exc
                assert self._task is not None
                self._task.cancel()
                return
            except Exception as exc:  # the database is away: keep the stream, check again later
                log.warning("event=stream_recheck_failed method=%s error=%r", self._rule.method, exc)


def _rewrap(
    handler: grpc.RpcMethodHandler, guard: Callable[[Behavior, bool], Behavior]
) -> grpc.RpcMethodHandler:
    """`handler` with its behavior replaced by `guard(behavior, streaming_response)`."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(guard(handler.unary_unary, False), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(guard(handler.stream_unary, False), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(guard(handler.unary_stream, True), **kwargs)
    return grpc.stream_stream_rpc_method_handler(guard(handler.stream_stream, True), **kwargs)
