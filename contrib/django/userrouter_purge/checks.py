"""System checks: the middleware is installed first, and the purge URL is
an http(s) URL."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register

from . import conf

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
