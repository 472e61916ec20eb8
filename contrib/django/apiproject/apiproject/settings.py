"""A minimal API behind userrouter's credential checks: Django REST
framework with TokenAuthentication over MariaDB, the set-top box case of
userrouter's issue 18.

  /api/channels/    the same for every valid token: credentials = "shared"
  /api/mychannels/  the token's user's channels: credentials = "per-credential"

Environment (for the end-to-end test, credentials_e2e_test.go):
  APIPROJECT_DB_NAME, APIPROJECT_DB_HOST, APIPROJECT_DB_PORT,
  APIPROJECT_DB_USER, APIPROJECT_DB_PASSWORD   the MariaDB database
  USERROUTER_PURGE_URL                          userrouter's purge API
"""
import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "test-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "rest_framework",
    "rest_framework.authtoken",
    "userrouter_purge",
    "tv",
]

# No session or CSRF middleware: the API authenticates by token alone.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

ROOT_URLCONF = "apiproject.urls"
WSGI_APPLICATION = "apiproject.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": os.environ.get("APIPROJECT_DB_NAME", "apiproject"),
        "HOST": os.environ.get("APIPROJECT_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("APIPROJECT_DB_PORT", "3306"),
        "USER": os.environ.get("APIPROJECT_DB_USER", "root"),
        "PASSWORD": os.environ.get("APIPROJECT_DB_PASSWORD", ""),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TIME_ZONE = "UTC"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # One renderer: DRF then sends no "Vary: Accept", a header outside
    # userrouter's key that would keep the answers from being stored.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

# userrouter_purge's signals send the purges; its middleware (automatic
# table keys) is not used: the views tag their answers themselves.
SILENCED_SYSTEM_CHECKS = ["userrouter_purge.W001"]
USERROUTER_PURGE_URL = os.environ.get("USERROUTER_PURGE_URL") or None
USERROUTER_PURGE_TIMEOUT = 2

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"userrouter_purge": {"handlers": ["stderr"], "level": os.environ.get("USERROUTER_PURGE_LOG_LEVEL", "INFO")}},
}
