"""System checks: the middleware is installed first, the purge URL is an
http(s) URL, the token fits in a header, the timeout is bounded, the header
name is one."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register

from . import conf, purging

MIDDLEWARE = "userrouter_purge.middleware.SurrogateKeyMiddleware"


@register()
def check_settings(app_configs, **kwargs):
    out = []
    mw = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in mw:
        out.append(
            Warning(
                "%s is not in MIDDLEWARE: responses get no surrogate keys, so userrouter caches "
                "them untagged and key purges miss them." % MIDDLEWARE,
                hint="Add it first in MIDDLEWARE.",
                id="userrouter_purge.W001",
            )
        )
    elif mw[0] != MIDDLEWARE:
        out.append(
            Warning(
                "%s is not first in MIDDLEWARE: database work of the middleware before it (%s) is "
                "not collected, and responses they make get no keys." % (MIDDLEWARE, ", ".join(mw[: mw.index(MIDDLEWARE)])),
                hint="Move it to the top of MIDDLEWARE.",
                id="userrouter_purge.W002",
            )
        )
    url = conf.get("USERROUTER_PURGE_URL")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            out.append(
                Error(
                    "USERROUTER_PURGE_URL %r is not an http(s) URL." % (url,),
                    hint='Use userrouter\'s admin listener, e.g. "http://127.0.0.1:8091/purge".',
                    id="userrouter_purge.E001",
                )
            )
    token = conf.get("USERROUTER_PURGE_TOKEN")
    if token and (not isinstance(token, str) or not purging._TOKEN_RE.fullmatch(token)):
        out.append(
            Error(
                "USERROUTER_PURGE_TOKEN holds spaces or control characters: no purge can be sent.",
                hint="Strip the value (a trailing newline from a file?).",
                id="userrouter_purge.E003",
            )
        )
    timeout = conf.get("USERROUTER_PURGE_TIMEOUT")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        out.append(
            Error(
                "USERROUTER_PURGE_TIMEOUT %r is not a positive number of seconds: a save could wait "
                "without bound for userrouter, or no purge could be sent." % (timeout,),
                hint="Leave the default (2).",
                id="userrouter_purge.E004",
            )
        )
    name = conf.get("USERROUTER_SURROGATE_KEY_HEADER")
    if not isinstance(name, str) or not name or any(c in name for c in " :\r\n\t"):
        out.append(
            Error(
                "USERROUTER_SURROGATE_KEY_HEADER %r is not a header name." % (name,),
                hint='Use one of userrouter\'s [cache] tag_headers, e.g. "Surrogate-Key".',
                id="userrouter_purge.E002",
            )
        )
    return out
