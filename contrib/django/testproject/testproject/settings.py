"""A minimal project using userrouter_purge: a blog whose public pages are
cacheable by userrouter (no {% csrf_token %}, no session access on them).

Environment (for the end-to-end test, django_e2e_test.go):
  TESTPROJECT_DB        the SQLite file (default db.sqlite3 beside manage.py)
  USERROUTER_PURGE_URL  userrouter's purge API (default: unset, no purges)
  USERROUTER_PURGE_TOKEN
"""
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "test-only-not-secret")
DEBUG = False
# userrouter passes the client's Host through; the test uses 127.0.0.1:<port>.
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "blog",
    "userrouter_purge",
]

MIDDLEWARE = [
    "userrouter_purge.middleware.SurrogateKeyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TESTPROJECT_DB") or os.path.join(BASE_DIR, "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LOGIN_REDIRECT_URL = "/articles/"

USE_TZ = True
TIME_ZONE = "UTC"

USERROUTER_PURGE_URL = os.environ.get("USERROUTER_PURGE_URL") or None
USERROUTER_PURGE_TOKEN = os.environ.get("USERROUTER_PURGE_TOKEN") or None
USERROUTER_PURGE_TIMEOUT = 2

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"userrouter_purge": {"handlers": ["stderr"], "level": os.environ.get("USERROUTER_PURGE_LOG_LEVEL", "INFO")}},
}
