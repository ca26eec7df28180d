"""Page plumbing: templates, who is looking, CSRF checks, and the route class that turns an
error into a page (or a redirect to the sign-in page) instead of a problem document."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from aiaas.accounts.models import User
from aiaas.deps import RateLimitsDep, SessionDep, SettingsDep
from aiaas.errors import AppError, InvalidInput
from aiaas.logs import note_account
from aiaas.ratelimits import Decision, RateLimits, RouteClass
from aiaas.web import sessions

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
FLASH_COOKIE = "aiaas_flash"
# Pages load only what the gateway serves: a stray reference to another host fails loudly.
# Inline styles stay allowed for the confusion matrix's cell shades; inline scripts do not.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No live session: the visitor is sent to the sign-in page."""


class CsrfRefused(Exception):
    """A state-changing request without this session's CSRF token."""


@functools.cache
def templates() -> Jinja2Templates:
    # Data for scripts goes in <script type="application/json"> through Jinja's own |tojson,
    # which escapes <, >, & and ': no label can end the element or open a comment in it.
    return Jinja2Templates(directory=HERE / "templates")


@dataclass(frozen=True, slots=True)
class Browser:
    """A signed-in browser: its account, its session's cookie token and CSRF token."""

    user: User
    token: str
    csrf: str


@dataclass(frozen=True, slots=True)
class Visitor:
    """A browser without a session, on the sign-in or sign-up page."""

    token: str
    csrf: str
    fresh: bool


def get_browser(request: Request, session: SessionDep, settings: SettingsDep) -> Browser:
    token = request.cookies.get(sessions.SESSION_COOKIE)
    user = sessions.user_of(session, token=token)
    # End the lookup's transaction (on SQLite, BEGIN IMMEDIATE: the write lock) now: the
    # playground awaits a prediction whose model lookup needs a session of its own.
    session.commit()
    if user is None or token is None:
        raise SignInRequired
    note_account(user.id)
    return Browser(user=user, token=token, csrf=sessions.csrf_token(settings.secret, token))


def get_visitor(request: Request, settings: SettingsDep) -> Visitor:
    token = request.cookies.get(sessions.VISITOR_COOKIE)
    fresh = not token
    token = token or sessions.new_token()
    return Visitor(token=token, csrf=sessions.csrf_token(settings.secret, token), fresh=fresh)


async def _given_csrf(request: Request) -> str | None:
    header = request.headers.get("x-csrf-token")
    if header is not None:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def checked_browser(
    request: Request, browser: Annotated[Browser, Depends(get_browser)], settings: SettingsDep
) -> Browser:
    if not sessions.csrf_valid(settings.secret, browser.token, await _given_csrf(request)):
        raise CsrfRefused
    return browser


async def checked_visitor(
    request: Request, visitor: Annotated[Visitor, Depends(get_visitor)], settings: SettingsDep
) -> Visitor:
    if visitor.fresh or not sessions.csrf_valid(
        settings.secret, visitor.token, await _given_csrf(request)
    ):
        raise CsrfRefused
    return visitor


def limit_browser(limits: RateLimits, browser: Browser, route_class: RouteClass) -> Decision | None:
    """Take one call of ``route_class`` from the account's buckets, as the API's routes do
    (the session counts as the account's login credential); 429 when they are empty."""
    user = browser.user
    return limits.check(
        limits.account_buckets(
            route_class,
            account_id=user.id,
            api_key_id=None,
            overrides=user.limits.get("rate_limits", {}),
        )
    )


def posted_within(route_class: RouteClass) -> Callable[..., Browser]:
    """A POST (CSRF checked) limited as the API's routes of ``route_class`` are: a page must
    not be a way round an account's rate limits."""

    def check(
        browser: Annotated[Browser, Depends(checked_browser)], limits: RateLimitsDep
    ) -> Browser:
        limit_browser(limits, browser, route_class)
        return browser

    check.__name__ = f"posted_within_{route_class}"
    return check


async def form_values(request: Request) -> dict[str, str]:
    """The posted form's text fields, for forms whose field names are known only once posted
    (an architecture's generated config fields, a field per quota). Starlette keeps the parsed
    form on the request: the CSRF check and the declared ``Form()`` fields read it already."""
    posted = await request.form()
    return {name: value for name, value in posted.items() if isinstance(value, str)}


SignedIn = Annotated[Browser, Depends(get_browser)]
# For every POST: a signed-in browser that sent its session's CSRF token.
Posted = Annotated[Browser, Depends(checked_browser)]
PostedRegistry = Annotated[Browser, Depends(posted_within(RouteClass.REGISTRY))]
PostedTrain = Annotated[Browser, Depends(posted_within(RouteClass.TRAIN))]
VisitorDep = Annotated[Visitor, Depends(get_visitor)]
PostedByVisitor = Annotated[Visitor, Depends(checked_visitor)]
FormValues = Annotated[dict[str, str], Depends(form_values)]


def render(
    request: Request,
    template: str,
    *,
    viewer: Browser | Visitor | None = None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    flash = request.cookies.get(FLASH_COOKIE)
    response = templates().TemplateResponse(
        request,
        template,
        {
            "browser": viewer if isinstance(viewer, Browser) else None,
            "csrf": viewer.csrf if viewer is not None else None,
            "flash": unquote(flash) if flash else None,
            **context,
        },
        status_code=status,
        headers=SECURITY_HEADERS,
    )
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    if isinstance(viewer, Visitor) and viewer.fresh:
        set_cookie(request, response, sessions.VISITOR_COOKIE, viewer.token, max_age=None)
    return response


def set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def redirect(request: Request, url: str, *, flash: str | None = None) -> RedirectResponse:
    """303 to ``url`` (after a POST the browser then GETs it), with a message for that page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        set_cookie(request, response, FLASH_COOKIE, quote(flash), max_age=60)
    return response


def local_path(target: str | None, default: str = "/models") -> str:
    """``target`` if it is a path on this site, else ``default``: a ``next`` parameter must not
    send a browser elsewhere after signing in."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return default


def field_errors(error: AppError) -> dict[str, str]:
    """An error's field problems by the last name in each location (for the form fields)."""
    found: dict[str, str] = {}
    for item in error.errors or []:
        # ("scopes", 0) is a problem of the scopes field; ("spec", "config", "hidden") of the
        # config's "hidden" and, for the form, of the config field as well.
        names = [str(part) for part in item.get("loc", ()) if not str(part).isdigit()]
        for name in reversed(names):
            found.setdefault(name, str(item.get("msg", "")))
    return found


def invalid_form(exc: ValidationError) -> InvalidInput:
    """A form's pydantic ValidationError as the InvalidInput the API would answer."""
    items = [
        {"loc": [str(part) for part in e["loc"]], "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    fields = ", ".join(dict.fromkeys(".".join(i["loc"]) for i in items))
    return InvalidInput(f"Please check: {fields}.", errors=items)


class PageRoute(APIRoute):
    """Every dashboard route: a visitor without a session is sent to sign in, a missing CSRF
    token gets a 403 page, and an ``AppError`` a page saying what went wrong, with its status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInRequired:
                path = request.url.path
                query = "" if path == "/" else "?" + urlencode({"next": _with_query(request)})
                return RedirectResponse(f"/login{query}", status_code=303)
            except CsrfRefused:
                return error_page(
                    request,
                    403,
                    "Refused",
                    "This form was sent without a valid security token. "
                    "Reload the page and try again.",
                )
            except RequestValidationError as exc:
                return error_page(request, 422, "Invalid input", _describe(exc.errors()))
            except AppError as exc:
                page = error_page(request, exc.status, exc.title, exc.detail)
                page.headers.update(
                    {k: v for k, v in exc.headers.items() if k.lower() == "retry-after"}
                )
                return page

        return page


def _with_query(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _describe(errors: Any) -> str:
    names = []
    for item in errors:
        loc = [str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path")]
        names.append(".".join(loc) or "the request")
    return "Please check: " + ", ".join(dict.fromkeys(names)) + "."


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    return render(request, "error.html", status=status, title=title, detail=detail)


def refused(
    request: Request,
    template: str,
    viewer: Browser | Visitor,
    error: AppError,
    **context: Any,
) -> HTMLResponse:
    """The form's page again, saying what was wrong, under the error's status."""
    response = render(
        request, template, viewer=viewer, status=error.status, **messages(error), **context
    )
    if "Retry-After" in error.headers:
        response.headers["Retry-After"] = error.headers["Retry-After"]
    return response


def messages(error: AppError) -> Mapping[str, Any]:
    """What a form shows for a refused submission: the summary and each field's problem."""
    return {"error": error.detail, "errors": field_errors(error), "problems": error.errors or []}
