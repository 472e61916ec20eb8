from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def user_key(user_id):
    """The surrogate key of everything the API answers for one user."""
    return "user-%d" % user_id


class TvConfig(AppConfig):
    name = "tv"
    default_auto_field = "django.db.models.AutoField"

    def ready(self):
        # The recipe (contrib/django/README.md, "Caching an API"): a change
        # to the data behind a user's answers purges that user's key, on
        # every userrouter instance; a change to the shared data purges its
        # own key, which the per-user answers carry too.
        from userrouter_purge import purge

        from .models import Channel, Subscription

        def subscription_changed(sender, instance, **kwargs):
            purge(keys=[user_key(instance.user_id)])

        def channel_changed(sender, instance, **kwargs):
            purge(keys=["channels"])

        for signal in (post_save, post_delete):
            signal.connect(subscription_changed, sender=Subscription, weak=False)
            signal.connect(channel_changed, sender=Channel, weak=False)
