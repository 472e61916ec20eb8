import uuid

from rest_framework.response import Response
from rest_framework.views import APIView

from .apps import user_key
from .models import Channel, Subscription


def echo(request):
    """What the request carried, so a test can tell what a fill sent; and
    a render id, so it can tell a fresh answer from a stored one."""
    return {
        "render": uuid.uuid4().hex,
        "authorization": request.META.get("HTTP_AUTHORIZATION", ""),
        "cookie": request.META.get("HTTP_COOKIE", ""),
    }


class ChannelList(APIView):
    """Every channel: the same answer for every valid token."""

    def get(self, request):
        body = echo(request)
        body["channels"] = [c.name for c in Channel.objects.order_by("id")]
        response = Response(body)
        response["Surrogate-Key"] = "channels"
        return response


class MyChannels(APIView):
    """The channels of the token's user."""

    def get(self, request):
        body = echo(request)
        body["user"] = request.user.username
        body["channels"] = [s.channel.name for s in Subscription.objects.filter(user=request.user).select_related("channel").order_by("id")]
        response = Response(body)
        response["Surrogate-Key"] = "%s channels" % user_key(request.user.pk)
        return response
