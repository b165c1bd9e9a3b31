"""How the agent reaches an MQTT broker: the options and the client, shared by the MQTT input
(gateway_agent/inputs/mqtt.py) and the MQTT command (gateway_agent/commands/mqtt.py).

Both talk to the same kind of broker (often Mosquitto on the Pi itself) with the
same options, so agent.toml spells them the same way in `[[inputs.mqtt]]` and
`[[commands.mqtt]]`: beside the table's own options, held in its `broker` field
(`Options.flattened`). aiomqtt is imported only when a client is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from msgspec import Meta

from gateway_agent.options import Options, Secret

if TYPE_CHECKING:
    import aiomqtt


class BrokerSettings(Options, kw_only=True, frozen=True):
    """The broker and the credentials to use there."""

    host: Annotated[str, Meta(description="The broker's host name or address.")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535, description="The broker's port (8883 is usual with TLS).")] = (
        1883
    )
    username: Annotated[str | None, Meta(description="User name; unset connects anonymously.")] = None
    password: Annotated[Secret | None, Meta(description="Password for `username`.")] = None
    tls: Annotated[bool, Meta(description="TLS to the broker, verified against the system's roots.")] = False
    client_id: Annotated[str, Meta(description="MQTT client id; empty: the agent picks one.")] = ""


def client(settings: BrokerSettings, identifier: str | None = None) -> aiomqtt.Client:
    """An unconnected client for `settings` (`async with` connects it); `identifier` is used when
    the settings name no client id (None: a random one)."""
    import aiomqtt

    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        identifier=settings.client_id or identifier,
        tls_params=aiomqtt.TLSParameters() if settings.tls else None,
    )
