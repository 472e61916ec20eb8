"""Settings of userrouter_purge, with their defaults.

Settings are read at first use and cached; the cache is dropped on
``setting_changed``, so ``override_settings`` works in tests.

USERROUTER_PURGE_URL
    userrouter's purge API, e.g. ``"http://127.0.0.1:8091/purge"`` (the admin
    listener, ``[listen] admin_addr``). Default None: nothing is sent, and a
    warning is logged once per process.
USERROUTER_PURGE_TOKEN
    Sent as ``Authorization: Bearer <token>``; must match userrouter's
    ``[purge] token``; visible ASCII only. Default None (no header).
USERROUTER_PURGE_TIMEOUT
    Seconds a purge POST may wait to connect, and for each read of the
    answer (a host name is resolved outside this bound). Default 2.
USERROUTER_SURROGATE_KEY_HEADER
    The response header carrying the keys; must be one of userrouter's
    ``[cache] tag_headers``. Default ``"Surrogate-Key"``.
USERROUTER_SURROGATE_KEY_QUERIES
    Tag each response with the model key of every table its SQL read, so
    that a list which rendered no object is still purged when one is
    created. Default True. See ``userrouter_purge.keys``.
USERROUTER_PURGE_MODEL_KEY_ON_UPDATE
    Purge the model key (``app_label.model_name``) on updates too, not only
    on creates and deletes: True (every model), False (none), or a list of
    model labels. Default True, because an update can move a row into or
    out of a filtered list (a draft becoming published). See the README.
USERROUTER_PURGE_IGNORE_MODELS
    App labels (``"sessions"``) or model labels (``"admin.logentry"``) that
    are never tagged nor purged. Default ``DEFAULT_IGNORE_MODELS``. The
    delete signal is connected at startup to the models not ignored then
    (see apps.py).
"""

from django.conf import settings
from django.core.signals import setting_changed

# Tables that change without changing what a public page shows, or that
# every request touches: sessions, content types, permissions, the admin's
# log, and migration records.
DEFAULT_IGNORE_MODELS = (
    "sessions",
    "contenttypes",
    "migrations",
    "auth.permission",
    "admin.logentry",
)

DEFAULTS = {
    "USERROUTER_PURGE_URL": None,
    "USERROUTER_PURGE_TOKEN": None,
    "USERROUTER_PURGE_TIMEOUT": 2,
    "USERROUTER_SURROGATE_KEY_HEADER": "Surrogate-Key",
    "USERROUTER_SURROGATE_KEY_QUERIES": True,
    "USERROUTER_PURGE_MODEL_KEY_ON_UPDATE": True,
    "USERROUTER_PURGE_IGNORE_MODELS": DEFAULT_IGNORE_MODELS,
}


_cache = {}


def get(name):
    """Return the setting, or its default."""
    try:
        return _cache[name]
    except KeyError:
        value = _cache[name] = getattr(settings, name, DEFAULTS[name])
        return value


def _derived(name, build):
    try:
        return _cache["derived", name]
    except KeyError:
        value = _cache["derived", name] = build(get(name))
        return value


def ignored(label):
    """Report whether the model label ("app.model") is never tagged nor purged."""
    names = _derived("USERROUTER_PURGE_IGNORE_MODELS", lambda v: frozenset(s.lower() for s in v))
    return label in names or label.partition(".")[0] in names


def model_key_on_update(label):
    """Report whether an update of a row of the model purges its model key."""

    def build(v):
        if v is True or v is False:
            return v
        return frozenset(s.lower() for s in v)

    v = _derived("USERROUTER_PURGE_MODEL_KEY_ON_UPDATE", build)
    return v if isinstance(v, bool) else label in v


def _changed(setting, **kwargs):
    if setting in DEFAULTS:
        _cache.clear()
        if setting == "USERROUTER_PURGE_URL":
            from . import purging

            purging._warned_unset = False


setting_changed.connect(_changed, dispatch_uid="userrouter_purge.conf")
