#!/usr/bin/python3
"""Make signed_cookies session cookies with a real Django, and judge them.

    /usr/bin/python3 sessioncheck/testdata/make_signed_cookies.py > sessioncheck/testdata/signed_cookies.json

Cookies are made the way a site makes them: a request passes through
SessionMiddleware with SESSION_ENGINE = signed_cookies, the view logs a user
in with django.contrib.auth.login or fills a cart, and the middleware sets
the cookie. Then Django itself loads every cookie, untouched or damaged, at
the time it was made ("made_at"), with SESSION_COOKIE_AGE ("max_age"), and
says two things: "session", "identified" when the session it loads holds
_auth_user_id with a value other than null or "" (userrouter's rule, applied
to what Django loads), and "user", "identified" when
django.contrib.auth.get_user finds the visitor logged in (which also needs
the user in the database and a matching _auth_user_hash).
TestSignedCookieDjangoFixtures reads the JSON without Python;
TestSignedCookieAgreesWithDjango runs this script again.

With --judge, stdin is {"cookies": [...], "at": unix time} and stdout the
"session" verdicts Django gives them then, one per cookie.
"""
import json
import sys
import time
from unittest import mock

import django
from django.conf import settings

SECRET_KEY = "userrouter-signed-cookie-secret-not-for-production"
MAX_AGE = 1209600

settings.configure(
    SECRET_KEY=SECRET_KEY,
    DEBUG=False,
    USE_TZ=True,
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    SESSION_COOKIE_AGE=MAX_AGE,
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
)
django.setup()

from django.contrib.auth import login  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.sessions.backends.signed_cookies import SessionStore  # noqa: E402
from django.contrib.sessions.middleware import SessionMiddleware  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.test.utils import override_settings  # noqa: E402


def cookie_after(view):
    """Run view behind the session middleware; return the cookie it sets."""

    def handler(request):
        view(request)
        return HttpResponse("ok")

    response = SessionMiddleware(handler)(RequestFactory().get("/"))
    return response.cookies["sessionid"].value


def judge(cookie, at):
    """What the session Django loads from the cookie at the given time says."""
    with mock.patch("time.time", return_value=at):
        session = SessionStore(session_key=cookie).load()
    return "identified" if session.get("_auth_user_id") not in (None, "") else "anonymous"


def judge_user(cookie, at):
    """Whether Django's auth finds the visitor logged in."""
    from django.contrib.auth import get_user

    request = RequestFactory().get("/")
    request.session = SessionStore(session_key=cookie)
    with mock.patch("time.time", return_value=at):
        return "identified" if get_user(request).is_authenticated else "anonymous"


def tamper(cookie):
    """Flip one character of the payload, keeping it base64url."""
    i = 5
    c = cookie[i]
    return cookie[:i] + ("A" if c != "A" else "B") + cookie[i + 1:]


def main():
    call_command("migrate", verbosity=0, interactive=False)
    alice = User.objects.create_user("alice", "alice@example.com", "pw")

    def log_in(request):
        login(request, alice, backend="django.contrib.auth.backends.ModelBackend")

    def log_in_with_cart(request):
        log_in(request)
        request.session["cart"] = [{"sku": "SKU-%04d" % i, "qty": 2} for i in range(40)]

    def cart(n):
        def view(request):
            request.session["cart"] = [{"sku": "SKU-%04d" % i, "qty": 1 + i % 3} for i in range(n)]

        return view

    def bare_login(request):
        # A custom login view's minimal session: too small to compress.
        request.session["_auth_user_id"] = str(alice.pk)

    def language(request):
        request.session["django_language"] = "fr"

    def odd_values(request):
        request.session["ratio"] = float("nan")
        request.session["big"] = float("inf")
        request.session["nested"] = {"a": [[[{"b": None}]]], "e": "caf\u00e9 \u2603"}
        log_in(request)

    made_at = int(time.time())
    rows = []
    with mock.patch("time.time", return_value=made_at):
        for name, view in [
            ("logged in", log_in),
            ("logged in, compressed (large cart)", log_in_with_cart),
            ("_auth_user_id alone, uncompressed (a custom login view)", bare_login),
            ("logged in, NaN and Infinity and nesting", odd_values),
            ("anonymous with a language choice", language),
            ("anonymous with a small cart", cart(1)),
            ("anonymous with a large cart, compressed", cart(60)),
        ]:
            rows.append({"name": name, "cookie": cookie_after(view)})
        with override_settings(SECRET_KEY="another-secret"):
            rows.append({"name": "logged in, signed with another secret", "cookie": cookie_after(log_in)})
        with override_settings(DEFAULT_HASHING_ALGORITHM="sha1"):
            rows.append({"name": "logged in, Django 3.1-3.2 sha1 signature", "cookie": cookie_after(log_in)})
    with mock.patch("time.time", return_value=made_at - MAX_AGE - 60):
        rows.append({"name": "logged in, signed a minute over max_age ago", "cookie": cookie_after(log_in)})
        rows.append({"name": "anonymous, signed a minute over max_age ago", "cookie": cookie_after(language)})
    with mock.patch("time.time", return_value=made_at - MAX_AGE + 3600):
        rows.append({"name": "logged in, an hour left", "cookie": cookie_after(log_in)})

    damaged = []
    for row in rows[:4]:
        damaged.append({"name": row["name"] + ", payload tampered", "cookie": tamper(row["cookie"])})
        damaged.append({"name": row["name"] + ", signature cut", "cookie": row["cookie"][:-1]})
        damaged.append({"name": row["name"] + ", timestamp changed",
                        "cookie": row["cookie"].rsplit(":", 2)[0] + ":0:" + row["cookie"].rsplit(":", 1)[1]})
    rows += damaged
    for row in rows:
        row["session"] = judge(row["cookie"], made_at)
        row["user"] = judge_user(row["cookie"], made_at)
    json.dump({"secret_key": SECRET_KEY, "django": django.get_version(), "made_at": made_at, "max_age": MAX_AGE,
               "rows": rows}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    if sys.argv[1:] == ["--judge"]:
        req = json.load(sys.stdin)
        print(json.dumps([judge(c, req["at"]) for c in req["cookies"]]))
    else:
        main()
