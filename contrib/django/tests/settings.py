"""Settings for runtests.py: the test project, plus the tests app."""
from testproject.settings import *  # noqa: F401,F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = INSTALLED_APPS + ["tests"]
ROOT_URLCONF = "tests.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USERROUTER_PURGE_URL = None  # tests that purge point it at their own server
USERROUTER_PURGE_TOKEN = None
# Quiet by default; assertLogs still sees the records.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"userrouter_purge": {"handlers": ["null"], "propagate": False}},
}
