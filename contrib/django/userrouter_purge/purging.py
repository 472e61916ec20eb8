"""Purging: which keys a change purges, when they are sent, and the client
of userrouter's purge API.

What a change purges
--------------------
* post_save, created: the row's instance key and its model key (a new row
  changes every list of the model, empty ones included).
* post_save, updated: the instance key, and the model key when
  USERROUTER_PURGE_MODEL_KEY_ON_UPDATE covers the model (default: every
  model; an update can move a row into or out of a filtered list),
  otherwise the model's fallback key ``label:*``.
* post_delete: the instance key, the model key, and the key of every
  many-to-many through table of the model (Django deletes those rows
  without signals).
* m2m_changed (post_add, post_remove, post_clear): the through table's
  model key; the instance as updated; each related row of pk_set as
  updated; for a clear (pk_set unknown) the related model's fallback key.

A multi-table-inheritance row purges the keys of its model and every
parent. Ignored models (USERROUTER_PURGE_IGNORE_MODELS) purge nothing.

When they are sent
------------------
Never before the data is committed: keys wait for ``transaction.on_commit``
on the database that was written, and are dropped with a rolled-back
transaction or savepoint. Then:

* inside a request handled by SurrogateKeyMiddleware, or inside
  ``with userrouter_purge.batch():``, they join that request's (block's)
  single purge, POSTed before the response is returned (at the block's
  end), so the client's next request sees the change;
* otherwise, the keys of one transaction are sent in one POST when it
  commits (one per savepoint level that had changes), or at once in
  autocommit mode.

A POST carries at most 10,000 keys and URLs and about 1 MB; more are split.
Every POST that purges keys also purges the overflow key
(``userrouter_purge.keys.OVERFLOW_KEY``), and the fallback key of the model
of every instance key, so a page tagged within the limits by fallback keys
is purged whenever its full key set would have been.

Failures
--------
A purge that fails (userrouter unreachable, timeout, an answer other than
200, a redirect, which is never followed) is logged on the "userrouter_purge"
logger and never raised into the application; the pages it should have
purged stay cached until their TTL. There is no retry, but for one case: a
body refused with 400 that held URLs and keys is sent again without its
URLs, so that a URL userrouter refuses (a path while it caches several
hosts) does not cost the keys. A purge is cheap to repeat by hand with
``send_purge(keys=[...])``. The token is never logged.
"""

import contextlib
import contextvars
import functools
import http.client
import json
import logging
import re
import socket
import threading
import urllib.error
import urllib.request

from django.db import transaction

from . import conf
from .keys import OVERFLOW_KEY, _labels, _pk_part, _instance_key, check_key, fallback_key, label

logger = logging.getLogger("userrouter_purge")

MAX_ITEMS = 10000  # URLs and keys in one purge request (userrouter's maxPurgeItems)
MAX_BODY = 1000000  # bytes of one request body; userrouter takes up to 1 MiB

_warned_unset = False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would follow a 301, 302 or 303 with a GET,
    carrying the Authorization header to wherever it points, and report the
    purge done. Refused, the 3xx is an HTTPError, logged as a failure."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)  # never via http_proxy

# What a bearer token may hold: visible ASCII. A token with a newline (read
# from a file) would make http.client raise an error that quotes it.
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


def _chunks(urls, keys, all_):
    """Split a purge into request bodies within userrouter's limits."""
    body = {"urls": [], "keys": []}
    size = 64
    for field, items in (("urls", urls), ("keys", keys)):
        for item in items:
            n = len(json.dumps(item)) + 2
            if body["urls"] or body["keys"]:
                if len(body["urls"]) + len(body["keys"]) >= MAX_ITEMS or size + n > MAX_BODY:
                    yield body
                    body, size = {"urls": [], "keys": []}, 64
            body[field].append(item)
            size += n
    if body["urls"] or body["keys"] or all_:
        yield body


def send_purge(keys=(), urls=(), soft=False, all=False):
    """POST a purge to USERROUTER_PURGE_URL now, whatever the transaction.

    keys are surrogate keys (ValueError for one that is not; see
    keys.check_key); the overflow key, and the fallback key of the model of
    each instance key, are added. urls are
    absolute ("https://example.com/a?b=1"), or paths when userrouter caches
    one host. soft makes pages stale (served while one request refreshes
    them) instead of gone; all purges every page (it cannot be soft).
    Returns True when userrouter confirmed every request (or there was
    nothing to send), False otherwise; failures are logged, never raised.
    """
    global _warned_unset
    _check_lists(keys, urls)
    if all and soft:
        raise ValueError("purge all cannot be soft: userrouter refuses it")
    keys = list(dict.fromkeys(check_key(k) for k in keys))
    urls = list(dict.fromkeys(urls))
    if not keys and not urls and not all:
        return True
    if keys:
        # A page over the limits carries, instead of an instance key, its
        # model's fallback key or the overflow key: purge them along.
        known = _model_labels()
        for k in list(keys):
            lbl, sep, pk = k.partition(":")
            if sep and pk != "*" and lbl in known:
                keys.append(fallback_key(lbl))
        keys.append(OVERFLOW_KEY)
        keys = list(dict.fromkeys(keys))
    url = conf.get("USERROUTER_PURGE_URL")
    if not url:
        if not _warned_unset:
            _warned_unset = True
            logger.warning(
                "USERROUTER_PURGE_URL is not set, so no purge is sent and changed pages stay "
                "cached until their TTL: set it to userrouter's admin listener, e.g. "
                '"http://127.0.0.1:8091/purge"'
            )
        return False
    ok = True
    for body in _chunks(urls, keys, all):
        body["all"], body["soft"] = bool(all), bool(soft)
        all = False  # once is enough
        status = _post(url, body)
        if status == 400 and body["urls"] and body["keys"]:
            # userrouter refuses the whole body for one URL it cannot take
            # (a path while it caches several hosts): keep the keys.
            _post(url, dict(body, urls=[]))
        ok = status == 200 and ok
    return ok


def _check_lists(keys, urls):
    for name, v in (("keys", keys), ("urls", urls)):
        if isinstance(v, (str, bytes)):
            raise TypeError("%s is a list of strings, not one string: write %s=[%r]" % (name, name, v))


@functools.lru_cache(maxsize=1)
def _model_labels():
    from django.apps import apps

    return frozenset(label(m) for m in apps.get_models(include_auto_created=True))


def _post(url, body):
    """POST one purge body; return userrouter's HTTP status, 0 when there was
    no answer. Failures are logged."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    what = "purge of %d keys and %d URLs" % (len(body["keys"]), len(body["urls"]))
    token = conf.get("USERROUTER_PURGE_TOKEN")
    if token:
        if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            logger.error(
                "%s not sent: USERROUTER_PURGE_TOKEN holds spaces or control characters (a trailing "
                "newline?); the pages stay cached until their TTL",
                what,
            )
            return 0
        req.add_header("Authorization", "Bearer " + token)
    timeout = conf.get("USERROUTER_PURGE_TIMEOUT")
    try:
        with _opener.open(req, timeout=timeout) as resp:
            answer = resp.read(64 << 10)
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read(64 << 10)).get("error") or e.reason
        except (ValueError, AttributeError, OSError):
            why = e.reason
        finally:
            e.close()
        hint = {
            400: "a URL userrouter cannot take, or the cache is off in userrouter",
            403: "check USERROUTER_PURGE_TOKEN against userrouter's [purge] token, "
            "and that this host is in [purge] allow",
            503: "userrouter's store (memcached) failed",
        }.get(e.code, "is USERROUTER_PURGE_URL userrouter's /purge on its admin listener?")
        logger.error(
            "%s refused by %s: %d %s (%s); the pages stay cached until their TTL", what, url, e.code, why, hint
        )
        return e.code
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        logger.error(
            "%s failed: userrouter at %s did not answer within %ss (%s); the pages stay cached "
            "until their TTL. Check USERROUTER_PURGE_URL and that userrouter's admin listener runs",
            what,
            url,
            timeout,
            reason,
        )
        return 0
    logger.debug("%s: userrouter answered %s", what, answer.decode("utf-8", "replace").strip()[:200])
    return 200


class Outbox:
    """The purges of one request or batch() block, sent together by flush().
    Safe for concurrent use."""

    def __init__(self):
        self._lock = threading.Lock()
        self._keys = {}
        self._urls = {}
        self._closed = False

    def add(self, keys, urls):
        """Queue keys and URLs; False when the outbox was already flushed."""
        with self._lock:
            if self._closed:
                return False
            self._keys.update(dict.fromkeys(keys))
            self._urls.update(dict.fromkeys(urls))
            return True

    def flush(self):
        """Send what was queued, in as few requests as the limits allow; once."""
        with self._lock:
            self._closed = True
            keys, urls = list(self._keys), list(self._urls)
        if keys or urls:
            _send_quietly(keys, urls)


_outbox = contextvars.ContextVar("userrouter_purge_outbox", default=None)


@contextlib.contextmanager
def batch():
    """Gather the purges of the block (after their transactions commit) and
    send them in one request at its end. Nested blocks join the outer one.
    For management commands and tasks; requests get one from
    SurrogateKeyMiddleware."""
    if _outbox.get() is not None:
        yield
        return
    ob = Outbox()
    token = _outbox.set(ob)
    try:
        yield
    finally:
        _outbox.reset(token)
        ob.flush()


def _send_quietly(keys, urls):
    """send_purge for commit hooks and the middleware: whatever goes wrong
    is logged, never raised into the application."""
    try:
        send_purge(keys=keys, urls=urls)
    except Exception:
        logger.exception("purge of %d keys and %d URLs failed; the pages stay cached until their TTL", len(keys), len(urls))


def _deliver(keys, urls):
    ob = _outbox.get()
    if ob is None or not ob.add(keys, urls):
        _send_quietly(keys, urls)


class _TxBatch:
    """The keys of one transaction at one savepoint level, sent by one
    on_commit callback: Django drops the callback, and so the keys, with a
    rolled-back transaction or savepoint."""

    __slots__ = ("hooks", "keys", "urls", "done")

    def __init__(self, hooks):
        self.hooks = hooks
        self.keys = {}
        self.urls = {}
        self.done = False

    def run(self):
        self.done = True
        _deliver(list(self.keys), list(self.urls))


def schedule(keys=(), urls=(), using=None):
    """Purge keys and URLs once the current transaction on the database
    `using` commits (now, in autocommit mode), batched as the module doc
    says."""
    if not keys and not urls:
        return
    conn = transaction.get_connection(using)
    if not conn.in_atomic_block:
        if not conn.get_autocommit():
            logger.warning(
                "purging %d keys before the commit: on_commit is unavailable under manual "
                "transaction management; a page refetched before the commit may be cached stale",
                len(keys),
            )
        _deliver(list(keys), list(urls))
        return
    # One callback per transaction and savepoint level. Django replaces its
    # list of callbacks (run_on_commit) at each commit and rollback, so a
    # batch whose list is no longer the connection's was sent or dropped:
    # start another.
    hooks = getattr(conn, "run_on_commit", None)
    if not isinstance(hooks, list):  # a Django that keeps them otherwise: no batching
        transaction.on_commit(functools.partial(_deliver, list(keys), list(urls)), using)
        return
    sids = tuple(conn.savepoint_ids)
    pending = getattr(conn, "_userrouter_purge_pending", None) or {}
    b = pending.get(sids)
    if b is None or b.done or b.hooks is not hooks:
        pending = {k: v for k, v in pending.items() if v.hooks is hooks and not v.done}
        b = pending[sids] = _TxBatch(hooks)
        conn._userrouter_purge_pending = pending
        transaction.on_commit(b.run, using)
    b.keys.update(dict.fromkeys(keys))
    b.urls.update(dict.fromkeys(urls))


def _changed(model, pk, membership):
    """The keys a change of one row purges: membership is True when rows
    were added or removed (create, delete), False for an update."""
    out = []
    part = _pk_part(pk)
    for lbl in _labels(model):
        if conf.ignored(lbl):
            continue
        out.append(_instance_key(lbl, part))
        out.append(lbl if membership else fallback_key(lbl))
    return out


@functools.lru_cache(maxsize=None)
def _through_labels(model):
    """The labels of the many-to-many through tables of a model and its
    parents, forward and reverse."""
    out = []
    concrete = model._meta.concrete_model
    for m in [concrete] + concrete._meta.get_parent_list():
        for f in m._meta.get_fields(include_hidden=True):
            if f.many_to_many:
                through = getattr(f, "through", None) or getattr(f.remote_field, "through", None)
                if isinstance(through, type):
                    out.append(label(through))
    return tuple(dict.fromkeys(out))


def purge(*objects, keys=(), urls=(), using=None):
    """Purge by hand what Django sends no signal for: QuerySet.update(),
    bulk_create(), bulk_update(), raw SQL.

    objects are saved model instances (purged as updated) or model classes
    (every page tagged with any key of the model: its model key and
    fallback key). keys are your own surrogate keys (ValueError for one that
    is not valid), urls absolute URLs or paths. Sent after the current
    transaction on `using` commits, batched like the signals' purges;
    failures are logged, never raised.
    """
    out = []
    for obj in objects:
        if isinstance(obj, type) and hasattr(obj, "_meta"):
            for lbl in _labels(obj):
                out += [lbl, lbl + ":*"]
        elif hasattr(obj, "_meta"):
            if obj.pk is None:
                raise ValueError("%r has no pk: pass saved instances, or the model class" % (obj,))
            out += _changed(type(obj), obj.pk, False)
        else:
            raise TypeError("purge() takes model instances or classes; pass strings as keys=[...]")
    _check_lists(keys, urls)
    out += [check_key(k) for k in keys]
    schedule(out, list(urls), using)


# Signal receivers, connected by apps.py.


def on_post_save(sender, instance, created, using, **kwargs):
    schedule(_changed(sender, instance.pk, created), (), using)


def on_post_delete(sender, instance, using, **kwargs):
    if instance.pk is None:
        return
    keys = _changed(sender, instance.pk, True)
    if keys:
        keys += [t for t in _through_labels(sender) if not conf.ignored(t)]
    schedule(keys, (), using)


def on_m2m_changed(sender, instance, action, model, pk_set, using, **kwargs):
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if action != "post_clear" and not pk_set:
        return  # nothing was added or removed
    keys = []
    through = label(sender)
    if not conf.ignored(through):
        keys.append(through)
    keys += _changed(type(instance), instance.pk, False)
    if pk_set is None:
        keys += [fallback_key(lbl) for lbl in _labels(model) if not conf.ignored(lbl)]
    else:
        for pk in pk_set:
            keys += _changed(model, pk, False)
    schedule(keys, (), using)
