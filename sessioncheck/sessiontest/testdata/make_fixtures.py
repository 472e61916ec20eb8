#!/usr/bin/python3
"""Make django_session fixture rows with a real Django.

Run with Debian's Django (python3-django, 3.2), python3-mysqldb and
python3-psycopg2:

    /usr/bin/python3 sessioncheck/sessiontest/testdata/make_fixtures.py > sessioncheck/sessiontest/testdata/django_sessions.json
    /usr/bin/python3 sessioncheck/sessiontest/testdata/make_fixtures.py --ddl mysql > sessioncheck/sessiontest/testdata/django_session.mysql.sql
    /usr/bin/python3 sessioncheck/sessiontest/testdata/make_fixtures.py --ddl sqlite > sessioncheck/sessiontest/testdata/django_session.sqlite.sql
    /usr/bin/python3 sessioncheck/sessiontest/testdata/make_fixtures.py --ddl postgres > sessioncheck/sessiontest/testdata/django_session.postgres.sql

Sessions are made the way a site makes them: a request passes through
SessionMiddleware, the view logs a user in with django.contrib.auth.login,
adds a message with django.contrib.messages, or fills a cart, and the
middleware saves the session. The rows are then read back from Django's own
session table (an in-memory SQLite database), so session_data is exactly
what Django writes. The Go tests load the JSON; they do not need Python.
"""
import datetime
import json
import sys

import django
from django.conf import settings

SECRET_KEY = "userrouter-fixture-secret-key-not-for-production"

settings.configure(
    SECRET_KEY=SECRET_KEY,
    DEBUG=False,
    USE_TZ=True,
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "django.contrib.messages",
    ],
    DATABASES={
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        # Only for --ddl mysql: sqlmigrate asks the server for its version.
        "mysql": {"ENGINE": "django.db.backends.mysql", "NAME": "mysql", "HOST": "127.0.0.1", "USER": "root"},
        # Only for --ddl postgres, likewise.
        "postgres": {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres", "HOST": "127.0.0.1", "USER": "postgres"},
    },
    SESSION_ENGINE="django.contrib.sessions.backends.db",
    MESSAGE_STORAGE="django.contrib.messages.storage.session.SessionStorage",
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
)
django.setup()

from django.contrib import messages  # noqa: E402
from django.contrib.auth import login  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.messages.middleware import MessageMiddleware  # noqa: E402
from django.contrib.sessions.middleware import SessionMiddleware  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.test.utils import override_settings  # noqa: E402


def ddl(vendor):
    from io import StringIO

    out = StringIO()
    call_command("sqlmigrate", "sessions", "0001", database=vendor if vendor in ("mysql", "postgres") else "default", stdout=out)
    lines = [l for l in out.getvalue().splitlines() if l and not l.startswith("--")]
    print("\n".join(lines))


def session_after(view):
    """Run view behind the session and message middleware; return the session key."""

    def handler(request):
        return MessageMiddleware(lambda r: view(r) or HttpResponse("ok"))(request)

    request = RequestFactory().get("/")
    response = SessionMiddleware(handler)(request)
    return response.cookies["sessionid"].value


def main():
    call_command("migrate", verbosity=0, interactive=False)
    alice = User.objects.create_user("alice", "alice@example.com", "pw")
    bob = User.objects.create_user("bob", "bob@example.com", "pw")

    def log_in(user):
        def view(request):
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")

        return view

    def cart(n):
        def view(request):
            request.session["cart"] = [{"sku": "SKU-%04d" % i, "qty": 1 + i % 3, "name": "Widget %d" % i} for i in range(n)]

        return view

    def message(request):
        messages.info(request, "Your subscription is confirmed.")

    def language(request):
        request.session["django_language"] = "fr"

    def logged_in_with_cart(request):
        login(request, bob, backend="django.contrib.auth.backends.ModelBackend")
        request.session["cart"] = [{"sku": "SKU-%04d" % i, "qty": 2} for i in range(40)]

    cases = [
        ("logged in", log_in(alice), "identified"),
        ("logged in, compressed (large cart)", logged_in_with_cart, "identified"),
        ("anonymous with a small cart", cart(1), "anonymous"),
        ("anonymous with a large cart, compressed", cart(60), "anonymous"),
        ("anonymous with a message", message, "anonymous"),
        ("anonymous with a language choice", language, "anonymous"),
    ]
    rows = []
    for name, view, want in cases:
        key = session_after(view)
        rows.append((name, key, want))
    # The legacy format (Django 1.4-3.0, and 3.1-3.2 with the sha1 setting).
    with override_settings(DEFAULT_HASHING_ALGORITHM="sha1"):
        rows.append(("legacy format, logged in", session_after(log_in(bob)), "identified"))
        rows.append(("legacy format, anonymous with a cart", session_after(cart(3)), "anonymous"))

    out = []
    for name, key, want in rows:
        s = Session.objects.get(session_key=key)
        out.append({"name": name, "session_key": key, "session_data": s.session_data, "want": want})

    # An expired session: Django would not load it, neither may we.
    key = session_after(log_in(alice))
    s = Session.objects.get(session_key=key)
    out.append({"name": "expired, logged in", "session_key": key, "session_data": s.session_data,
                "want": "no-row", "expired": True})
    # Corrupted data: the row exists, but nothing can be decoded from it.
    key = session_after(log_in(bob))
    s = Session.objects.get(session_key=key)
    data = s.session_data
    out.append({"name": "corrupted payload", "session_key": key,
                "session_data": data[:10] + "!!!!" + data[14:], "want": "doubt"})
    # A well-formed row whose signature was made with another SECRET_KEY:
    # decodable, so identified without secret_key, doubt with it.
    with override_settings(SECRET_KEY="another-secret"):
        key = session_after(log_in(alice))
    s = Session.objects.get(session_key=key)
    out.append({"name": "signed with another secret", "session_key": key, "session_data": s.session_data,
                "want": "identified", "want_verified": "doubt"})

    json.dump({"secret_key": SECRET_KEY, "django": django.get_version(), "rows": out}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--ddl":
        ddl(sys.argv[2])
    else:
        main()
