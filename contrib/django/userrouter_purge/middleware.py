"""SurrogateKeyMiddleware: tag responses with surrogate keys, and send the
request's purges in one request before the response leaves.

Put it first in MIDDLEWARE, so that it sees the database work of every
other middleware (a page served by a middleware outside it would be cached
without keys) and their final response. It works under WSGI and ASGI.
"""

import inspect

from asgiref.sync import sync_to_async

try:  # asgiref >= 3.6 also recognises callables Django marks as coroutines
    from asgiref.sync import iscoroutinefunction
except ImportError:  # pragma: no cover
    iscoroutinefunction = inspect.iscoroutinefunction

from django.utils.decorators import sync_and_async_middleware

from . import keys, purging


def _begin(request):
    token = keys.begin()
    collector = keys.current()
    setattr(request, keys.REQUEST_ATTR, collector)
    ob = purging.Outbox()
    return token, purging._outbox.set(ob), ob, collector


def _end(state):
    """Stop collecting; return the collector and the outbox to flush."""
    token, ob_token, ob, collector = state
    keys.end(token)
    purging._outbox.reset(ob_token)
    return collector, ob


@sync_and_async_middleware
def SurrogateKeyMiddleware(get_response):
    """Collect the keys of each GET and HEAD response into its surrogate
    key header (see userrouter_purge.keys), and gather the purges caused
    while handling the request (see userrouter_purge.purging) into one POST
    sent before the response is returned, even when the view failed (and
    before the response is tagged, so that no failure there loses them)."""

    if iscoroutinefunction(get_response):

        async def middleware(request):
            state = _begin(request)
            try:
                response = await get_response(request)
            finally:
                collector, ob = _end(state)
                await sync_to_async(ob.flush, thread_sensitive=False)()
            keys.tag_response(request, response, collector)
            return response

    else:

        def middleware(request):
            state = _begin(request)
            try:
                response = get_response(request)
            finally:
                collector, ob = _end(state)
                ob.flush()
            keys.tag_response(request, response, collector)
            return response

    return middleware
