from django.apps import AppConfig, apps
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.signals import m2m_changed, post_delete, post_init, post_save

from . import conf, keys, purging


class UserrouterPurgeConfig(AppConfig):
    """Connects the receivers and installs the query hook.

    * post_init (every model): collect instance keys during requests.
    * post_save and m2m_changed (every model): purge.
    * post_delete: purge; connected model by model, for the models not in
      USERROUTER_PURGE_IGNORE_MODELS at startup and not auto-created
      many-to-many through tables, because a post_delete receiver turns off
      Django's fast delete (one DELETE without loading rows) for its model.
    * connection_created: add keys.query_wrapper to each database
      connection, unless USERROUTER_SURROGATE_KEY_QUERIES is False at
      startup (it is also checked at each query).
    """

    name = "userrouter_purge"
    verbose_name = "userrouter purge"

    def ready(self):
        from . import checks  # noqa: F401 (registers the system checks)

        post_init.connect(keys.on_post_init, dispatch_uid="userrouter_purge.post_init")
        post_save.connect(purging.on_post_save, dispatch_uid="userrouter_purge.post_save")
        m2m_changed.connect(purging.on_m2m_changed, dispatch_uid="userrouter_purge.m2m_changed")
        for model in apps.get_models(include_auto_created=True):
            if model._meta.auto_created or conf.ignored(keys.label(model)):
                continue
            post_delete.connect(
                purging.on_post_delete, sender=model, dispatch_uid="userrouter_purge.post_delete"
            )
        if conf.get("USERROUTER_SURROGATE_KEY_QUERIES"):
            connection_created.connect(keys.install_query_wrapper, dispatch_uid="userrouter_purge.queries")
            for conn in connections.all():
                if conn.connection is not None:
                    keys.install_query_wrapper(conn)
