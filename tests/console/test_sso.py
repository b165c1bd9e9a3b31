"""Single sign-on in the console, in headless Chromium, through the real Envoy's jwt_authn.

Beside the package's `sensormesh up`: an identity provider double on a loopback port
(tests/support/identity_provider.py), query and control processes on the same database that
trust the identity Envoy forwards (as k8s/components/sso sets them), a `sensormesh console`
configured for the provider, and an Envoy with single sign-on in front of them. The browser
signs in by the provider's redirect: discovery, /authorize sending it straight back with a
code, the code exchanged with the PKCE verifier, the access token sent to Envoy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from sensormesh_cli.stack.envoy_proxy import EnvoyOptions, EnvoyProcess, start_envoy
from sensormesh_cli.stack.envoy_sso import SingleSignOn
from tests.console.conftest import ConsoleStack
from tests.support.identity_provider import OidcProvider, s256
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess

# The first test also waits for `sensormesh up` (up to 240 s, tests/console/conftest.py).
pytestmark = pytest.mark.timeout(600)

CLIENT_ID = "sensormesh-console"
AUDIENCE = "sensormesh"
ROLE_CLAIM = "https://sensormesh.dev/role"  # a namespaced claim, as Auth0 and Okta write them
SIMULATED = ("greenhouse-pi", "vibration-pi", "soil-node")
SSO_BUTTON = "Sign in with single sign-on"


@dataclass(frozen=True)
class SsoConsole:
    url: str  # the console on the single sign-on Envoy
    idp: OidcProvider
    logs: Path


@pytest.fixture(scope="module")
def sso_console(
    console_stack: ConsoleStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SsoConsole]:
    logs = tmp_path_factory.mktemp("console-sso")
    envoy_port = free_port()
    url = f"http://127.0.0.1:{envoy_port}/"
    idp = OidcProvider(CLIENT_ID, AUDIENCE, ROLE_CLAIM, redirect_uris={url}).start()
    trust = {
        "SENSORMESH_DATABASE_URL": console_stack.database_url,
        "SENSORMESH_TRUST_FORWARDED_IDENTITY": "true",
        "SENSORMESH_SSO_ROLE_CLAIM": ROLE_CLAIM,
    }
    sso = {
        "SENSORMESH_CONSOLE_SSO_ISSUER": idp.issuer,
        "SENSORMESH_CONSOLE_SSO_CLIENT_ID": CLIENT_ID,
        "SENSORMESH_CONSOLE_SSO_AUDIENCE": AUDIENCE,
    }
    processes = [
        ServiceProcess(["query"], {**trust, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"}, logs / "query.log"),
        ServiceProcess(
            ["control"], {**trust, "SENSORMESH_CONTROL_LISTEN": "127.0.0.1:0"}, logs / "control.log"
        ),
        ServiceProcess(["console", "--listen", "127.0.0.1:0"], sso, logs / "console.log"),
    ]
    envoy: EnvoyProcess | None = None
    try:
        query, control, console = (("127.0.0.1", p.wait_serving(60)) for p in processes)
        options = EnvoyOptions(
            listen_port=envoy_port,
            admin_port=free_port(),
            ingest=("127.0.0.1", console_stack.ports.ingest),
            query=query,
            control=control,
            console=console,
            health_check_interval_s=1.0,
            sso=SingleSignOn(idp.issuer, (AUDIENCE,), jwks_uri=idp.jwks_uri),
        )
        envoy = start_envoy(options, log_dir=logs, timeout_s=60)
        yield SsoConsole(url, idp, logs)
    finally:
        if envoy is not None:
            envoy.stop()
        for process in processes:
            process.stop()
        idp.stop()


def _single_sign_on(page: Page, console: SsoConsole, start: str = "") -> None:
    page.goto(f"{console.url}{start}")
    page.get_by_role("button", name=SSO_BUTTON).click()


def test_without_single_sign_on_the_console_offers_the_key_form_alone(
    page: Page, console_stack: ConsoleStack
) -> None:
    page.goto(console_stack.url)
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.get_by_role("button", name=SSO_BUTTON)).to_have_count(0)


def test_an_operator_signs_in_by_the_providers_redirect_and_sees_the_fleet(
    page: Page, sso_console: SsoConsole
) -> None:
    sso_console.idp.sign_in_as("olga@example.com", "operator")
    _single_sign_on(page, sso_console, start="#/devices/greenhouse-pi")
    expect(page.get_by_test_id("caller")).to_contain_text("sso:olga@example.com · operator")
    # Back on the page the sign-in started from, the provider's answer gone from the address.
    assert urlsplit(page.url).fragment == "/devices/greenhouse-pi", page.url
    assert "code=" not in page.url and "state=" not in page.url
    expect(page.get_by_test_id("commands").get_by_role("button", name="ping", exact=True)).to_be_visible()
    page.get_by_role("link", name="Fleet", exact=True).click()
    rows = page.get_by_test_id("device-row")
    for device_id in SIMULATED:  # searched: test_fleet_scale.py may have added 1,000 devices before them
        page.get_by_label("Search devices").fill(device_id)
        expect(rows.filter(has_text=device_id)).to_contain_text("online")
    # The token stays in the tab like a key: a reload signs in again without the provider.
    page.reload()
    expect(page.get_by_test_id("caller")).to_contain_text("sso:olga@example.com")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name=SSO_BUTTON)).to_be_visible()
    assert page.evaluate("Object.keys(sessionStorage)") == []


def test_a_viewer_signed_in_by_sso_sees_no_command_button(page: Page, sso_console: SsoConsole) -> None:
    sso_console.idp.sign_in_as("vera@example.com", "viewer")
    _single_sign_on(page, sso_console)
    expect(page.get_by_test_id("caller")).to_contain_text("sso:vera@example.com · viewer")
    expect(page.get_by_role("link", name="Keys")).to_have_count(0)
    page.goto(f"{sso_console.url}#/devices/greenhouse-pi")
    expect(page.get_by_test_id("latest")).to_contain_text("temperature")
    expect(page.get_by_test_id("commands")).to_contain_text("Viewers see commands")
    expect(page.get_by_role("button")).to_have_text(["Sign out"])


def test_a_wrong_pkce_verifier_is_refused_with_a_clear_message(page: Page, sso_console: SsoConsole) -> None:
    """The challenge the provider sees is changed on the way, so the tab's verifier no longer matches it."""
    sso_console.idp.sign_in_as("mallory@example.com", "admin")

    def swap_challenge(route: Route) -> None:
        url = urlsplit(route.request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        query["code_challenge"] = s256("a verifier this tab never made" + "x" * 20)
        route.continue_(url=url._replace(query=urlencode(query)).geturl())

    page.route(f"{sso_console.idp.issuer}authorize*", swap_challenge)
    _single_sign_on(page, sso_console)
    expect(page.get_by_role("alert")).to_contain_text(
        "issued no token (invalid_grant: PKCE verification failed)"
    )
    expect(page.get_by_test_id("caller")).to_have_count(0)
    expect(page.get_by_role("button", name=SSO_BUTTON)).to_be_visible()


def test_a_tampered_token_is_refused_by_envoy_with_a_clear_message(
    page: Page, sso_console: SsoConsole
) -> None:
    sso_console.idp.sign_in_as("olga@example.com", "operator", tamper=True)
    _single_sign_on(page, sso_console)
    expect(page.get_by_role("alert")).to_contain_text("sensormesh refused the single sign-on token")
    expect(page.get_by_test_id("caller")).to_have_count(0)
    assert page.evaluate("Object.keys(sessionStorage)") == []


def test_an_expired_session_says_so_and_offers_sign_in_again(page: Page, sso_console: SsoConsole) -> None:
    # Long enough to see the signed-in page on a busy machine; Envoy would take it for 60 s more
    # (its clock skew): the console's own timer ends the session.
    sso_console.idp.sign_in_as("olga@example.com", "operator", token_lifetime_s=10)
    _single_sign_on(page, sso_console)
    expect(page.get_by_test_id("caller")).to_contain_text("sso:olga@example.com")
    expect(page.get_by_role("alert")).to_contain_text("the token expired. Sign in again.", timeout=30_000)
    expect(page.get_by_test_id("caller")).to_have_count(0)
    sso_console.idp.sign_in_as("olga@example.com", "operator")
    page.get_by_role("button", name=SSO_BUTTON).click()
    expect(page.get_by_test_id("caller")).to_contain_text("sso:olga@example.com")


def test_no_code_or_token_reaches_a_log(page: Page, sso_console: SsoConsole) -> None:
    """Codes come back in the fragment, which browsers never send; tokens are never logged."""
    sso_console.idp.sign_in_as("olga@example.com", "operator")
    _single_sign_on(page, sso_console)
    expect(page.get_by_test_id("caller")).to_contain_text("sso:olga@example.com")
    page.get_by_role("link", name="Alerts").click()  # a call or two more with the token
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()
    with sso_console.idp.state.lock:
        issued = list(sso_console.idp.state.issued)
    for log in sso_console.logs.rglob("*.log"):
        text = log.read_text(errors="replace")
        assert not [secret for secret in issued if secret in text], log
