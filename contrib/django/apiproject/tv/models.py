from django.conf import settings
from django.db import models


class Channel(models.Model):
    name = models.CharField(max_length=100)


class Subscription(models.Model):
    """A user's (a set-top box's) channel."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE)
