"""Browser sessions and CSRF, through the ASGI app (no browser): the cookie's flags, what
ends a session, the token every form must carry, and that cookies never open the API."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from aiaas.db import Database
from aiaas.web.models import WebSession
from aiaas.web.sessions import SESSION_COOKIE
from tests.factories import PASSWORD, Account
from tests.helpers import assert_problem, bearer
from tests.web.conftest import csrf_of, sign_in


def test_a_visitor_is_sent_to_sign_in(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    response = client.get("/models?q=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fmodels%3Fq%3Dx"
    page = client.get("/login")
    assert "<h1>Sign in</h1>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_sign_in_sets_an_httponly_lax_cookie_and_stores_only_a_hash(
    client: TestClient, registered: Account, db: Database
) -> None:
    sign_in(client, registered)
    cookie = client.cookies[SESSION_COOKIE]
    with db.session() as session:
        stored = session.scalars(select(WebSession.token_hash)).all()
    assert cookie not in stored
    assert len(stored) == 1
    header = _set_cookie_header(client, registered)
    assert "HttpOnly" in header
    assert "SameSite=lax" in header
    assert "Secure" not in header
    assert client.get("/models").status_code == 200


def _set_cookie_header(client: TestClient, account: Account) -> str:
    client.cookies.delete(SESSION_COOKIE)
    token = csrf_of(client, "/login")
    response = client.post(
        "/login",
        data={"email": account.email, "password": account.password, "csrf_token": token},
        follow_redirects=False,
    )
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))


def test_the_cookie_is_secure_over_https(client: TestClient, registered: Account) -> None:
    client.base_url = "https://testserver"  # type: ignore[assignment]  # httpx parses it
    assert "Secure" in _set_cookie_header(client, registered)


def test_cookies_never_authenticate_the_api(client: TestClient, account: Account) -> None:
    assert client.get("/models").status_code == 200
    assert_problem(client.get("/v1/me"), 401)
    assert_problem(client.get("/v1/models"), 401)
    assert client.get("/v2/models/anything").status_code == 401
    assert client.get("/v1/me", headers=bearer(account.token)).status_code == 200


def test_a_form_without_the_csrf_token_is_refused(client: TestClient, account: Account) -> None:
    for data in ({"name": "k", "scopes": "predict"}, {"name": "k", "csrf_token": "forged"}):
        refused = client.post("/keys", data=data)
        assert refused.status_code == 403
        assert "security token" in refused.text
    assert client.get("/v1/api-keys", headers=bearer(account.token)).json()["data"] == []
    # A visitor's sign-in form carries one too: a third site cannot sign a browser in.
    client.cookies.clear()
    no_token = client.post("/login", data={"email": account.email, "password": PASSWORD})
    assert no_token.status_code == 403
    # And one session's token is no use to another.
    token = csrf_of(client, "/login")
    other = TestClient(client.app)
    other.get("/login")
    stolen = other.post(
        "/login", data={"email": account.email, "password": PASSWORD, "csrf_token": token}
    )
    assert stolen.status_code == 403


def test_sign_out_ends_the_session(client: TestClient, account: Account, db: Database) -> None:
    cookie = client.cookies[SESSION_COOKIE]
    token = csrf_of(client, "/models")
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.headers["location"] == "/login"
    client.cookies.set(SESSION_COOKIE, cookie)  # a copy of the old cookie opens nothing
    assert client.get("/models", follow_redirects=False).status_code == 303
    with db.session() as session:
        assert session.scalars(select(WebSession)).all() == []


def test_a_password_change_ends_the_session_and_the_login_tokens(
    client: TestClient, account: Account
) -> None:
    token = csrf_of(client, "/account")
    wrong = client.post(
        "/account/password",
        data={"csrf_token": token, "current_password": "nope", "new_password": "another one!"},
    )
    assert wrong.status_code == 403
    assert "current password is wrong" in wrong.text
    done = client.post(
        "/account/password",
        data={"csrf_token": token, "current_password": PASSWORD, "new_password": "another one!"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/login"
    assert client.get("/models", follow_redirects=False).status_code == 303
    assert client.get("/v1/me", headers=bearer(account.token)).status_code == 401


def test_an_api_password_change_ends_dashboard_sessions(
    client: TestClient, account: Account
) -> None:
    changed = client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "yet another one"},
        headers=bearer(account.token),
    )
    assert changed.status_code == 204
    assert client.get("/models", follow_redirects=False).status_code == 303


def test_wrong_credentials_show_a_message_and_sign_in_nothing(
    client: TestClient, registered: Account
) -> None:
    token = csrf_of(client, "/login")
    response = client.post(
        "/login", data={"email": registered.email, "password": "wrong", "csrf_token": token}
    )
    assert response.status_code == 401
    assert "Email or password is wrong." in response.text
    assert SESSION_COOKIE not in client.cookies


def test_sign_up_signs_in(client: TestClient) -> None:
    token = csrf_of(client, "/signup")
    data = {"email": "New@Example.com", "password": PASSWORD, "confirm": PASSWORD}
    short = client.post(
        "/signup", data={**data, "password": "short", "confirm": "short", "csrf_token": token}
    )
    assert short.status_code == 422
    assert "at least 8 characters" in short.text
    made = client.post("/signup", data={**data, "csrf_token": token}, follow_redirects=False)
    assert made.status_code == 303
    assert "new@example.com" in client.get("/models").text
    again = client.post("/signup", data={**data, "csrf_token": token})
    assert again.status_code == 409


def test_next_only_leads_to_this_site(client: TestClient, registered: Account) -> None:
    token = csrf_of(client, "/login")
    for target, expected in (
        ("/keys", "/keys"),
        ("//evil.example", "/models"),
        ("https://evil.example", "/models"),
    ):
        client.cookies.delete(SESSION_COOKIE)
        response = client.post(
            "/login",
            data={
                "email": registered.email,
                "password": PASSWORD,
                "csrf_token": token,
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == expected
