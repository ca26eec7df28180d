"""Sign-up, sign-in, sign-out and the account page (password change)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import ValidationError

from aiaas import events
from aiaas.accounts import service as accounts
from aiaas.accounts.deps import ThrottleDep
from aiaas.accounts.models import User
from aiaas.accounts.schemas import LoginRequest, PasswordChange, RegisterRequest
from aiaas.deps import ClientAddress, EventsDep, SessionDep, SettingsDep, address_limited
from aiaas.errors import AppError
from aiaas.web import sessions
from aiaas.web.pages import (
    Browser,
    PageRoute,
    Posted,
    PostedByVisitor,
    SignedIn,
    SignInRequired,
    VisitorDep,
    get_browser,
    invalid_form,
    local_path,
    redirect,
    refused,
    render,
    set_cookie,
)

router = APIRouter(route_class=PageRoute)
FormText = Annotated[str, Form()]


def _signed_in(request: Request, session: SessionDep, settings: SettingsDep) -> bool:
    try:
        get_browser(request, session, settings)
    except SignInRequired:
        return False
    return True


def _start_session(
    request: Request, session: SessionDep, settings: SettingsDep, *, user: User, to: str
) -> Response:
    token = sessions.start(session, user=user, ttl_s=settings.web_session_ttl_s)
    response = redirect(request, to)
    ttl = settings.web_session_ttl_s
    set_cookie(request, response, sessions.SESSION_COOKIE, token, max_age=ttl)
    return response


def _end_session(request: Request, session: SessionDep, browser: Browser, flash: str) -> Response:
    sessions.end(session, token=browser.token)
    response = redirect(request, "/login", flash=flash)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    return response


@router.get("/")
def home(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    target = "/models" if _signed_in(request, session, settings) else "/login"
    return redirect(request, target)


@router.get("/login")
def login_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    visitor: VisitorDep,
    next: str | None = None,
) -> Response:
    if _signed_in(request, session, settings):
        return redirect(request, local_path(next))
    return render(request, "login.html", viewer=visitor, next=local_path(next), email="")


@router.post("/login", dependencies=[Depends(address_limited)])
def login(
    request: Request,
    visitor: PostedByVisitor,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    address: ClientAddress,
    email: FormText = "",
    password: FormText = "",
    next: FormText = "",
) -> Response:
    target = local_path(next)
    try:
        body = LoginRequest(email=email, password=password)
        user = accounts.sign_in(
            session, email=body.email, password=body.password, address=address, throttle=throttle
        )
    except ValidationError as exc:
        return refused(request, "login.html", visitor, invalid_form(exc), email=email, next=target)
    except AppError as exc:
        return refused(request, "login.html", visitor, exc, email=email, next=target)
    return _start_session(request, session, settings, user=user, to=target)


@router.get("/signup")
def signup_page(request: Request, visitor: VisitorDep) -> Response:
    return render(request, "signup.html", viewer=visitor, email="")


@router.post("/signup", dependencies=[Depends(address_limited)])
def signup(
    request: Request,
    visitor: PostedByVisitor,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    address: ClientAddress,
    email: FormText = "",
    password: FormText = "",
    confirm: FormText = "",
) -> Response:
    try:
        body = RegisterRequest(email=email, password=password)
        if confirm != password:
            return render(
                request,
                "signup.html",
                viewer=visitor,
                status=422,
                email=email,
                error="The two passwords differ.",
                errors={"confirm": "does not match the password"},
            )
        user = accounts.register(
            session, email=body.email, password=body.password, address=address, throttle=throttle
        )
    except ValidationError as exc:
        return refused(request, "signup.html", visitor, invalid_form(exc), email=email)
    except AppError as exc:
        return refused(request, "signup.html", visitor, exc, email=email)
    return _start_session(request, session, settings, user=user, to="/models")


@router.post("/logout")
def logout(request: Request, browser: Posted, session: SessionDep) -> Response:
    return _end_session(request, session, browser, "You are signed out.")


@router.get("/account")
def account_page(request: Request, browser: SignedIn) -> Response:
    return render(request, "account.html", viewer=browser)


@router.post("/account/password")
def change_password(
    request: Request,
    browser: Posted,
    session: SessionDep,
    bus: EventsDep,
    address: ClientAddress,
    current_password: FormText = "",
    new_password: FormText = "",
) -> Response:
    try:
        body = PasswordChange(current_password=current_password, new_password=new_password)
        accounts.change_password(
            session,
            user=browser.user,
            current=body.current_password,
            new=body.new_password,
            address=address,
        )
    except ValidationError as exc:
        return refused(request, "account.html", browser, invalid_form(exc))
    except AppError as exc:
        return refused(request, "account.html", browser, exc)
    bus.publish(events.ACCOUNT_CHANGED, str(browser.user.id))
    return _end_session(request, session, browser, "Password changed: sign in with the new one.")
