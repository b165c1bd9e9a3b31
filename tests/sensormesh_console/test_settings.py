"""The console's single sign-on settings: what the browser is told, and a clear error naming the
setting for anything it could not use."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from sensormesh_console.settings import ConsoleSettings, describe

ISSUER = "SENSORMESH_CONSOLE_SSO_ISSUER"
CLIENT_ID = "SENSORMESH_CONSOLE_SSO_CLIENT_ID"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ISSUER", "CLIENT_ID", "SCOPES", "AUDIENCE", "CONNECT_ORIGINS"):
        monkeypatch.delenv(f"SENSORMESH_CONSOLE_SSO_{name}", raising=False)
    monkeypatch.chdir("/")  # no .env of a checkout


def test_unset_there_is_no_single_sign_on() -> None:
    config = ConsoleSettings().config()
    assert config.sso is None and config.connect_origins == ()


def test_a_provider_is_told_to_the_browser_and_its_origin_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ISSUER, "https://login.example.com/realms/ops/")
    monkeypatch.setenv(CLIENT_ID, "sensormesh-console")
    monkeypatch.setenv("SENSORMESH_CONSOLE_SSO_AUDIENCE", "sensormesh")
    monkeypatch.setenv("SENSORMESH_CONSOLE_SSO_CONNECT_ORIGINS", "https://tokens.example.com")
    config = ConsoleSettings().config()
    assert config.sso is not None
    assert (config.sso.issuer, config.sso.client_id, config.sso.scopes, config.sso.audience) == (
        "https://login.example.com/realms/ops/",
        "sensormesh-console",
        "openid",
        "sensormesh",
    )
    assert config.connect_origins == ("https://login.example.com", "https://tokens.example.com")


@pytest.mark.parametrize(
    ("env", "named", "says"),
    [
        ({ISSUER: "https://login.example.com/"}, CLIENT_ID, "is needed"),
        ({CLIENT_ID: "console"}, ISSUER, "is unset"),
        ({ISSUER: "http://login.example.com/", CLIENT_ID: "c"}, ISSUER, "must be https://"),
        ({ISSUER: "login.example.com", CLIENT_ID: "c"}, ISSUER, "https:// URL"),
        ({ISSUER: "https://login.example.com/?x=1", CLIENT_ID: "c"}, ISSUER, "no query"),
        (
            {
                ISSUER: "https://a.example.com/",
                CLIENT_ID: "c",
                "SENSORMESH_CONSOLE_SSO_CONNECT_ORIGINS": "https://b/x",
            },
            "SENSORMESH_CONSOLE_SSO_CONNECT_ORIGINS",
            "origins",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str, says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        ConsoleSettings()
    message = describe(refused.value)
    assert named in message and says in message, message


def test_http_is_allowed_for_a_provider_on_this_machine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLIENT_ID, "c")
    for issuer in ("http://127.0.0.1:8081/", "http://localhost:8081/realms/dev", "http://[::1]:9000/"):
        monkeypatch.setenv(ISSUER, issuer)
        assert ConsoleSettings().config().sso is not None


def test_the_command_refuses_bad_settings_with_the_setting_named(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sensormesh_cli", "console", "--listen", "127.0.0.1:0"],
        env={"PATH": "/usr/bin:/bin", ISSUER: "https://login.example.com/"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{CLIENT_ID} is needed with {ISSUER}" in result.stderr
