"""Django settings for running BottleCRM (PyPI django-crm 1.35) under test. NEVER use these in production.

Loaded by the peer's own interpreter (its venv under .peers/bottlecrm), not by the hub's: the harness puts
this folder on PYTHONPATH and sets DJANGO_SETTINGS_MODULE=bottlecrm_settings. The upstream settings assume
PostgreSQL and Redis; here the database is a SQLite file named by BOTTLECRM_DB_PATH, Celery runs its tasks
eagerly in the web process (so a webhook is sent before the API call that caused it answers), and
BOTTLECRM_RUN_DIR receives the log files and uploads.

The webhook SSRF guard (webhooks/ssrf.py) is relaxed so deliveries can reach a receiver on this machine:
  * `ssrf.is_blocked(ip)` refuses loopback and private addresses -> loopback and private are allowed here;
    link-local (cloud metadata), multicast, reserved and the rest stay blocked;
  * `ssrf._allowed_ports()` allows only 443 (and 80 with DEBUG) -> any port here.
Both are module-level functions looked up at call time by `ssrf.parse`/`ssrf.resolve`, which the
registration serializer (validate_url) and the delivery task (ssrf.post) both go through.
"""

import os
from pathlib import Path

from crm.settings import *  # noqa: F401,F403 (the upstream settings, overridden below)
from crm.settings import LOGGING  # named explicitly: edited below
from webhooks import ssrf as _ssrf

_RUN_DIR = Path(os.environ["BOTTLECRM_RUN_DIR"])

SECRET_KEY = "tickethub-peer-tests-only-" + "x" * 40  # >= 32 bytes, or upstream warns on every JWT
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["BOTTLECRM_DB_PATH"],
        "OPTIONS": {"timeout": 20},  # runserver is threaded: wait for SQLite's write lock, don't fail
    }
}

CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "cache+memory://"
# Eager because the peer runs without a broker or worker: a delivery is sent inside the request that caused
# it (production sends it from a worker after commit). Failed deliveries wait for BottleCRM.retry_due_webhooks.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = False

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = str(_RUN_DIR / "media")
LOGGING["handlers"]["logfile"]["filename"] = str(_RUN_DIR / "server.log")
LOGGING["handlers"]["security_audit"]["filename"] = str(_RUN_DIR / "security_audit.log")

# ---- test-only: let webhooks reach a receiver on loopback, any port ---------------------------------
_upstream_is_blocked = _ssrf.is_blocked


def _is_blocked_except_local(ip):
    if ip.is_loopback or (ip.is_private and not ip.is_link_local):
        return False
    return _upstream_is_blocked(ip)


_ssrf.is_blocked = _is_blocked_except_local
_ssrf._allowed_ports = lambda: range(1, 65536)
