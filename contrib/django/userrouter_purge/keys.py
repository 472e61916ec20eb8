"""Surrogate keys: their format, their collection during a request, and the
header that carries them.

Keys
----
``app_label.model_name:pk``  the instance key: a page that shows this row.
``app_label.model_name``     the model key: a page whose content depends on
                             which rows of the table exist (a list, a count,
                             a 404 for a missing row).
``app_label.model_name:*``   the model's fallback key, see "Limits" below.
``userrouter_purge.overflow`` the overflow key, see "Limits" below.

Labels are Django's ``Model._meta.label_lower`` of the concrete model (a proxy
uses its concrete model's keys). A row of a multi-table-inheritance child
gets the keys of the child and of every parent, with the same pk. Bytes of
a label or pk outside printable ASCII, and ``%`` and ``,``, are written
``%XX`` (UTF-8); a key still longer than 1024 bytes becomes
``label:~<sha256 of the pk>``. Both sides (tagging and purging) use the
same functions, so a key always purges the pages it tagged.

Collection
----------
While SurrogateKeyMiddleware handles a request, a collector sits in a
context variable (so threads and asyncio tasks each see their own request,
and sync_to_async carries it into the ORM's thread). It gathers:

* the instance and model keys of every model instance constructed
  (Django's ``post_init`` signal) with a pk;
* the model key of every table named in a SELECT the request ran
  (USERROUTER_SURROGATE_KEY_QUERIES, default True): a database
  ``execute_wrapper``, Django's documented instrumentation hook, added to
  each connection when it opens. This is what tags an empty list: it
  constructs no instance, but its query read the table, and creating a
  row purges the model key. It also tags counts, ``exists()``,
  ``values()``, joins, subqueries and raw SQL, and tables reached through
  many-to-many "through" tables (``blog.article_tags``).
* keys added by the view: ``add_surrogate_keys`` or ``@surrogate_keys``.

Limits
------
userrouter (like Fastly) refuses to store a response with more than 256
keys or 16 KiB of key header, so a page is never stored with a key missing.
This module never emits more: when the full set is over, each model's
instance keys are replaced by one key that every change of any of its rows
purges (the model key when USERROUTER_PURGE_MODEL_KEY_ON_UPDATE covers the
model, else ``label:*``); when that is still over, the page gets the
overflow key alone, which every purge this app sends includes. Each step
purges the page at least whenever the full set would have.
"""

import contextvars
import functools
import hashlib
import inspect
import re
import threading
from urllib.parse import quote

from django.http.response import HttpResponseBase

from . import conf

MAX_KEY_LENGTH = 1024  # bytes in one key (userrouter's MaxTagLength)
MAX_KEYS = 256  # distinct keys on one response (MaxTagsPerPage)
MAX_HEADER_BYTES = 16 << 10  # bytes of key header on one response (MaxTagHeader)

#: Purged by every purge of keys this app sends; a page that cannot carry
#: its keys within the limits carries this one instead.
OVERFLOW_KEY = "userrouter_purge.overflow"

_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "%,")
_KEY_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,%d}" % MAX_KEY_LENGTH)


def _clean(s):
    return quote(s, safe=_SAFE)


@functools.lru_cache(maxsize=None)
def _labels(model):
    """The labels of a model's concrete class and its parents (multi-table
    inheritance), child first."""
    concrete = model._meta.concrete_model
    return tuple(_clean(m._meta.label_lower) for m in [concrete] + concrete._meta.get_parent_list())


def label(model):
    """Return the model's label in keys: "app_label.model_name"."""
    return _labels(model)[0]


def model_key(model):
    """Return the model key of a model class: "app_label.model_name"."""
    return label(model)


def _pk_part(pk):
    if isinstance(pk, int):
        return str(pk)
    return _clean(str(pk))


def _instance_key(lbl, pk_part):
    key = "%s:%s" % (lbl, pk_part)
    if len(key) > MAX_KEY_LENGTH:
        key = "%s:~%s" % (lbl, hashlib.sha256(pk_part.encode()).hexdigest())
    return key


def instance_key(obj):
    """Return the instance key of a saved model instance: "app_label.model_name:pk"."""
    if obj.pk is None:
        raise ValueError("%r has no pk: only saved instances have an instance key" % (obj,))
    return _instance_key(label(type(obj)), _pk_part(obj.pk))


def fallback_key(lbl):
    """Return the key that replaces a model's instance keys on a page over the limits."""
    return lbl if conf.model_key_on_update(lbl) else lbl + ":*"


def check_key(key):
    """Return key if it is a valid surrogate key, else raise ValueError."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(
            "%.80r is not a surrogate key: write printable ASCII without spaces or "
            "commas, at most %d bytes (pass model instances or classes to get theirs)" % (key, MAX_KEY_LENGTH)
        )
    return key


def fits(keys):
    """Report whether the distinct keys, joined by spaces, are within userrouter's limits."""
    keys = set(keys)
    return len(keys) <= MAX_KEYS and sum(len(k.encode()) for k in keys) + len(keys) - 1 <= MAX_HEADER_BYTES


class Collector:
    """The keys one response depends on. Safe for concurrent use: a view
    may hand its context to threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.models = set()  # labels
        self.instances = {}  # label -> set of pk parts, at most MAX_KEYS + 1 each
        self.extra = {}  # keys added by the view, in order (a dict as an ordered set)

    def add_instance(self, model, pk):
        pk_part = _pk_part(pk)
        with self._lock:
            for lbl in _labels(model):
                if conf.ignored(lbl):
                    continue
                self.models.add(lbl)
                pks = self.instances.setdefault(lbl, set())
                # Past MAX_KEYS the page falls back to the model's key anyway:
                # bound the memory a huge page costs.
                if len(pks) <= MAX_KEYS:
                    pks.add(pk_part)

    def add_models(self, labels):
        with self._lock:
            self.models.update(lbl for lbl in labels if not conf.ignored(lbl))

    def add(self, *keys):
        """Add keys: strings (validated), model instances (their instance
        and model keys) or model classes (their model key)."""
        for k in keys:
            if isinstance(k, type) and hasattr(k, "_meta"):
                self.add_models(_labels(k))
            elif hasattr(k, "_meta") and hasattr(k, "pk"):
                if k.pk is None:
                    raise ValueError("%r has no pk: pass saved instances, or the model class" % (k,))
                self.add_instance(type(k), k.pk)
            else:
                check_key(k)
                with self._lock:
                    self.extra[k] = None

    def header(self, existing=()):
        """Return the header value for these keys and the keys already in the
        header (existing), within the limits (see the module doc); "" when
        there is no key."""
        with self._lock:
            extra = list(dict.fromkeys(list(existing) + list(self.extra)))
            models = sorted(self.models)
            instances = {lbl: sorted(pks) for lbl, pks in self.instances.items() if pks}
        keys = extra + models
        for lbl in sorted(instances):
            keys.extend(_instance_key(lbl, p) for p in instances[lbl])
        keys = list(dict.fromkeys(keys))
        if not fits(keys):
            keys = list(dict.fromkeys(extra + models + [fallback_key(lbl) for lbl in sorted(instances)]))
            if not fits(keys):
                keys = [OVERFLOW_KEY]
        return " ".join(keys)


_current = contextvars.ContextVar("userrouter_purge_collector", default=None)

#: The request attribute where SurrogateKeyMiddleware puts the collector.
REQUEST_ATTR = "_userrouter_purge_collector"


def current():
    """Return the collector of the request being handled in this context, or None."""
    return _current.get()


def begin():
    """Start collecting in this context; pass the result to end()."""
    return _current.set(Collector())


def end(token):
    _current.reset(token)


def split_header(value):
    """Split a key header value on spaces and commas."""
    return [k for k in re.split(r"[ ,\t]+", value or "") if k]


def tag_response(request, response, collector):
    """Set the key header on a response that userrouter could store.

    Only GET and HEAD responses are tagged (userrouter never stores
    others); whatever their status and Cache-Control, because a
    ``[[cache.rule]]`` can store statuses and ignore Cache-Control. A
    streaming response gets the overflow key: its body is produced after
    this runs, so its full key set is not known when its headers are sent.
    Keys already in the header are kept.
    """
    if request.method not in ("GET", "HEAD"):
        return
    name = conf.get("USERROUTER_SURROGATE_KEY_HEADER")
    existing = split_header(response.get(name, ""))
    if getattr(response, "streaming", False):
        value = " ".join(dict.fromkeys(existing + [OVERFLOW_KEY]))
        if not fits(value.split(" ")):
            value = OVERFLOW_KEY
    else:
        value = collector.header(existing)
    if value:
        response[name] = value


def add_surrogate_keys(request_or_response, *keys):
    """Tag the response of the current request with more keys.

    keys are strings (printable ASCII without spaces or commas, at most
    1024 bytes; anything else raises ValueError), saved model instances
    (their instance and model keys) or model classes (their model key).
    Purge your own string keys with ``userrouter_purge.purge(keys=[...])``.

    Given the request, the keys join those collected by
    SurrogateKeyMiddleware; without the middleware (a RequestFactory test,
    say) this does nothing. Given a response, they are written into its
    header at once (the middleware, when present, adds its own and applies
    the limits).
    """
    if isinstance(request_or_response, HttpResponseBase):
        response = request_or_response
        c = Collector()
        c.add(*keys)
        name = conf.get("USERROUTER_SURROGATE_KEY_HEADER")
        value = c.header(split_header(response.get(name, "")))
        if value:
            response[name] = value
        return
    c = getattr(request_or_response, REQUEST_ATTR, None)
    if c is not None:
        c.add(*keys)


def surrogate_keys(*keys):
    """Decorate a view (sync or async) to tag its responses with keys.

    Each key is what add_surrogate_keys takes, or a callable called with
    the view's arguments (request, *args, **kwargs) that returns an
    iterable of them.
    """

    def resolve(request, args, kwargs):
        out = []
        for k in keys:
            out.extend(k(request, *args, **kwargs) if callable(k) and not isinstance(k, type) else [k])
        return out

    def decorator(view):
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request, *args, **kwargs):
                response = await view(request, *args, **kwargs)
                add_surrogate_keys(request, *resolve(request, args, kwargs))
                return response

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            add_surrogate_keys(request, *resolve(request, args, kwargs))
            return response

        return wrapper

    return decorator


# Signal receivers and the query hook; connected by apps.py.


def on_post_init(sender, instance, **kwargs):
    c = _current.get()
    if c is not None:
        pk = instance.pk
        if pk is not None:
            c.add_instance(sender, pk)


_READ_RE = re.compile(r"^[\s(]*(?:SELECT|WITH)\b", re.IGNORECASE)
_NAME_RE = re.compile(r'"([^"]+)"|`([^`]+)`|\[([^\]]+)\]|([A-Za-z_][\w$]*)')


@functools.lru_cache(maxsize=1)
def _tables():
    """Map each lower-cased table name to the labels of its models."""
    from django.apps import apps

    out = {}
    for m in apps.get_models(include_auto_created=True):
        if m._meta.proxy:
            continue
        out.setdefault(m._meta.db_table.lower(), set()).add(label(m))
    return {t: frozenset(ls) for t, ls in out.items()}


def tables_read(sql):
    """Return the labels of the models whose tables a SELECT names (an
    empty set for any other statement)."""
    # Statements repeat, so short ones are cached; long ones (large IN
    # lists) are mostly unique and would only fill the cache.
    if len(sql) <= 4096:
        return _tables_read_cached(sql)
    return _tables_read(sql)


def _tables_read(sql):
    if not _READ_RE.match(sql):
        return frozenset()
    tables = _tables()
    out = set()
    for groups in _NAME_RE.findall(sql):
        name = next(g for g in groups if g).lower()
        labels = tables.get(name)
        if labels:
            out.update(labels)
    return frozenset(out)


_tables_read_cached = functools.lru_cache(maxsize=1024)(_tables_read)


def query_wrapper(execute, sql, params, many, context):
    """A database execute_wrapper: during a request, tag the response with
    the model key of each table a SELECT reads."""
    c = _current.get()
    if c is not None and not many and conf.get("USERROUTER_SURROGATE_KEY_QUERIES"):
        labels = tables_read(sql)
        if labels:
            c.add_models(labels)
    return execute(sql, params, many, context)


def install_query_wrapper(connection, **kwargs):
    """Add query_wrapper to a connection (a connection_created receiver).

    It goes first, not last: a connection can open inside
    ``with connection.execute_wrapper(w):``, whose exit pops the last
    wrapper, which must still be w."""
    if query_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, query_wrapper)
