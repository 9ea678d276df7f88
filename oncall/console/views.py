"""Console pages (server-rendered): log in, log out and the home page.

The forms carry the session's CSRF token; no JavaScript is needed.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from oncall.accounts import services as accounts
from oncall.accounts.auth import csrf_token, current_user, login_session
from oncall.accounts.models import User
from oncall.circles.services import get_circle
from oncall.core.clock import utcnow
from oncall.errors import RateLimited, Unauthorized
from oncall.extensions import db

logger = logging.getLogger(__name__)

bp = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/console/static",
)


def _(text: str, **values: Any) -> str:
    """Mark a console string for translation (English until a catalogue is added)."""
    return text % values if values else text


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {"_": _, "csrf_token": csrf_token}


@bp.after_request
def _page_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _csrf_ok() -> bool:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf") or ""
    return bool(expected) and hmac.compare_digest(sent, expected)


def _session_user() -> User | None:
    try:
        return current_user()
    except Unauthorized:
        return None


def _login_page(status: int, error: str | None = None, email: str = "",
                headers: dict[str, str] | None = None) -> tuple[str, int, dict[str, str]]:
    body = render_template("login.html", error=error, email=email)
    return body, status, headers or {}


@bp.get("/login")
def login_form() -> Any:
    """The login form (a logged-in user goes straight to the home page)."""
    if session.get("uid") is not None and _session_user() is not None:
        return redirect(url_for("console.home"))
    return _login_page(200)


@bp.post("/login")
def login() -> Any:
    """Check the CSRF token and the credentials; start a session and go home."""
    email = request.form.get("email", "")[:254]
    password = request.form.get("password", "")[:1024]
    if not _csrf_ok():
        return _login_page(400, _("The form expired. Please try again."), email)
    try:
        user = accounts.authenticate(email, password, request.remote_addr, utcnow())
    except RateLimited as exc:
        return _login_page(429, _("Too many attempts. Please wait a few minutes."), email,
                           exc.headers)
    except Unauthorized:
        return _login_page(401, _("Wrong email or password."), email)
    login_session(user)
    logger.info("console login of user %s", user.id)
    return redirect(url_for("console.home"))


@bp.post("/logout")
def logout() -> BaseResponse | tuple[str, int, dict[str, str]]:
    """End the session (CSRF-checked) and go back to the login form."""
    uid = session.get("uid")
    if uid is not None and not _csrf_ok():
        user = db.session.get(User, uid)
        if user is not None and user.active and session.get("circle") == user.circle_id:
            body = render_template("home.html", user=user, circle=get_circle(user),
                                   error=_("The form expired. Please try again."))
            return body, 400, {}
    session.clear()
    return redirect(url_for("console.login_form"))


@bp.get("/")
def home() -> Any:
    """The console home page; without a session, the login form."""
    user = _session_user() if session.get("uid") is not None else None
    if user is None:
        return redirect(url_for("console.login_form"))
    circle = get_circle(user)
    return render_template("home.html", user=user, circle=circle, error=None)
