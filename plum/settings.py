"""Plum settings.

Everything comes from the environment. With nothing set, Plum runs embedded: a SQLite file,
Celery tasks executed eagerly in-process and e-mail printed to the console, so `make run`
needs no service. Production and CI set DATABASE_URL (Postgres) and REDIS_URL.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

from plum.event_catalog import catalogue_markdown

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default="DATABASE_URL" not in os.environ)
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "plum-insecure-development-key-change-me" if DEBUG else ""
)
if not SECRET_KEY:
    raise RuntimeError("SECRET_KEY must be set when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "plum.apps.PlumConfig",
    "campaigns.apps.CampaignsConfig",
    "wallets.apps.WalletsConfig",
    "orders.apps.OrdersConfig",
    "support.apps.SupportConfig",
    "ops.apps.OpsConfig",
]

MIDDLEWARE = [
    "plum.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "plum.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "plum.middleware.ApiBodySizeMiddleware",
    "plum.middleware.PageNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "plum.urls"
WSGI_APPLICATION = "plum.wsgi.application"
# API paths are accepted with and without a trailing slash by the URL conf itself: no redirects.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "plum" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# Services own their transactions (STYLE.md): no implicit request-wide transaction.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# Plum never grants permissions to anonymous users: no guardian anonymous user row.
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # The manifest needs `collectstatic`; tests and `make run` serve from the finders.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("STATIC_MANIFEST", default=not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Lets `make run` and tests serve static files without collectstatic.
WHITENOISE_USE_FINDERS = DEBUG or not env_bool("STATIC_MANIFEST", default=not DEBUG)
WHITENOISE_AUTOREFRESH = DEBUG

# Request bodies: the API answers 413 above this size (uploads get their own limit).
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(1024 * 1024)))
# Endpoints that take files (code imports, recipient uploads) accept up to this.
API_UPLOAD_MAX_BYTES = int(os.environ.get("API_UPLOAD_MAX_BYTES", str(20 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = API_UPLOAD_MAX_BYTES
# IPA recipient uploads: at most this many rows (and API_UPLOAD_MAX_BYTES) per file; valid
# rows are dispatched in chunks of UPLOAD_CHUNK_ROWS, one Celery task each; a chunk silent for
# UPLOAD_CHUNK_STALE_SECONDS lost its worker and is sent again by the sweeper.
UPLOAD_MAX_ROWS = int(os.environ.get("UPLOAD_MAX_ROWS", "100000"))
UPLOAD_CHUNK_ROWS = int(os.environ.get("UPLOAD_CHUNK_ROWS", "500"))
UPLOAD_CHUNK_STALE_SECONDS = int(os.environ.get("UPLOAD_CHUNK_STALE_SECONDS", "120"))

# Security headers; the secure cookies apply whenever DEBUG is off. HTTPS redirect and HSTS are
# switched on by the environment: the Docker image sets them (Dockerfile), docker-compose turns
# them off again for plain-http localhost, tests and `make run` leave them off.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Scripts only from this origin's files (no inline script on any page: tests/e2e/test_csp_browser
# loads every kind of page in Chromium and fails on a violation); inline style attributes are
# allowed for the admin's templates. An empty value sends no header.
CONTENT_SECURITY_POLICY = os.environ.get(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'",
)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The load balancer's health probe speaks plain http.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# Redis: Celery broker and cache. Without it, tasks run eagerly and the cache is local.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's Redis cache, reusing its client objects (plum/cache.py).
            "BACKEND": "plum.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "plum",
            # A Redis that is down or hung must not hold a request: fail within seconds.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Publishing happens in on_commit hooks: fail fast when the broker is down, the outbox
# sweeper delivers what could not be enqueued.
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {"task": "plum.tasks.outbox_sweep_task", "schedule": timedelta(seconds=30)},
    "audit-seal": {"task": "plum.tasks.audit_seal_task", "schedule": timedelta(minutes=1)},
    "vouchers-expire-lapsed": {
        "task": "campaigns.tasks.vouchers_expire_lapsed_task",
        "schedule": timedelta(minutes=5),
    },
    "points-expire-due": {
        "task": "wallets.tasks.points_expire_due_task",
        "schedule": timedelta(hours=6),
    },
    "jobs-fail-stale": {"task": "plum.tasks.job_fail_stale_task", "schedule": timedelta(minutes=5)},
    "idempotency-purge": {
        "task": "plum.tasks.idempotency_purge_task",
        "schedule": timedelta(hours=1),
    },
    # Idempotent: a period already closed is skipped, so a period closes within 6 h of its end.
    "payouts-close": {
        "task": "orders.tasks.payouts.payouts_close_task",
        "schedule": timedelta(hours=6),
    },
    "uploads-dispatch-sweep": {
        "task": "orders.tasks.uploads.upload_dispatch_sweep_task",
        "schedule": timedelta(seconds=30),
    },
    # Idempotent: a breach is marked (and escalated) once, by a conditional UPDATE.
    "tickets-sla-sweep": {
        "task": "support.tasks.tickets_sla_sweep_task",
        "schedule": timedelta(minutes=1),
    },
}

# Support tickets: a resolved or closed ticket may be reopened within this many days; the
# portal's "breaching soon" queue shows running tickets due within this many hours.
SUPPORT_REOPEN_DAYS = int(os.environ.get("SUPPORT_REOPEN_DAYS", "14"))
SUPPORT_BREACHING_SOON_HOURS = int(os.environ.get("SUPPORT_BREACHING_SOON_HOURS", "4"))

# E-mail: console by default; SMTP when EMAIL_HOST is set.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_TIMEOUT = 10
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Plum <rewards@plum.localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "plum.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["plum.api.permissions.HasApiScope"],
    "DEFAULT_THROTTLE_CLASSES": ["plum.api.throttling.ApiClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_client": os.environ.get("API_THROTTLE_RATE", "6000/min")},
    # Proxies in front of the app that append to X-Forwarded-For (for per-IP throttling).
    "NUM_PROXIES": int(os.environ["NUM_PROXIES"]) if os.environ.get("NUM_PROXIES") else None,
    "DEFAULT_PAGINATION_CLASS": "plum.api.pagination.PlumCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["plum.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "plum.api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Plum API",
    "DESCRIPTION": (
        "Reward and incentive platform. Authenticate with `Authorization: Bearer <key>`. "
        "Every POST accepts an `Idempotency-Key` header. Errors have the shape "
        '`{"error": {"code", "message", "fields"}}`.\n\n' + catalogue_markdown()
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["plum.api.schema.drop_trailing_slash_duplicates"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "plum.api.schema.document_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {"ChannelEnum": "plum.models.Channel"},
}

# Idempotency keys are kept at least this long before the purge task may drop them.
IDEMPOTENCY_KEY_TTL = timedelta(hours=int(os.environ.get("IDEMPOTENCY_KEY_TTL_HOURS", "24")))
# An in-flight key older than this is treated as abandoned (its request died).
IDEMPOTENCY_IN_FLIGHT_TIMEOUT = timedelta(minutes=5)

# A running job that reported no progress for this long lost its worker.
JOB_STALE_AFTER = timedelta(minutes=int(os.environ.get("JOB_STALE_AFTER_MINUTES", "15")))

OUTBOX_MAX_ATTEMPTS = int(os.environ.get("OUTBOX_MAX_ATTEMPTS", "8"))
OUTBOX_BACKOFF_BASE_SECONDS = float(os.environ.get("OUTBOX_BACKOFF_BASE_SECONDS", "30"))
OUTBOX_BACKOFF_MAX_SECONDS = float(os.environ.get("OUTBOX_BACKOFF_MAX_SECONDS", "3600"))
OUTBOX_SWEEP_BATCH = 500

AUDIT_SEAL_BATCH = 5000

# Deliveries (docs/delivery.md): one backend per channel, by dotted path. Without settings,
# e-mail goes through Django's mail (console unless EMAIL_HOST is set) and SMS and WhatsApp
# to the console backend.
PLUM_EMAIL_DELIVERY_BACKEND = os.environ.get(
    "PLUM_EMAIL_DELIVERY_BACKEND", "orders.delivery.email.EmailBackend"
)
PLUM_SMS_BACKEND = os.environ.get("PLUM_SMS_BACKEND", "orders.delivery.console.ConsoleBackend")
PLUM_WHATSAPP_BACKEND = os.environ.get(
    "PLUM_WHATSAPP_BACKEND", "orders.delivery.console.ConsoleBackend"
)


def _provider(prefix: str) -> dict:
    return {
        "name": os.environ.get(f"{prefix}_NAME", prefix.split("_")[1].lower()),
        "base_url": os.environ.get(f"{prefix}_BASE_URL", ""),
        "token": os.environ.get(f"{prefix}_TOKEN", ""),
        "sender": os.environ.get(f"{prefix}_SENDER", ""),
        "timeout": float(os.environ.get(f"{prefix}_TIMEOUT", "10")),
    }


PLUM_SMS_PROVIDER = _provider("PLUM_SMS")
PLUM_WHATSAPP_PROVIDER = _provider("PLUM_WHATSAPP")
PLUM_DELIVERY_MAX_ATTEMPTS = int(os.environ.get("PLUM_DELIVERY_MAX_ATTEMPTS", "8"))
# Delivery receipts: one HMAC secret per provider name, "name=secret,name2=secret2".
PLUM_DELIVERY_RECEIPT_SECRETS = dict(
    item.split("=", 1) for item in env_list("PLUM_DELIVERY_RECEIPT_SECRETS") if "=" in item
)
PLUM_DELIVERY_RECEIPT_TOLERANCE_SECONDS = int(
    os.environ.get("PLUM_DELIVERY_RECEIPT_TOLERANCE_SECONDS", "300")
)
# Notifications and webhooks (docs/webhooks.md).
PLUM_BASE_URL = os.environ.get("PLUM_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Fernet keys, newest first; empty: one key derived from SECRET_KEY (plum.secretbox).
PLUM_ENCRYPTION_KEYS = env_list("PLUM_ENCRYPTION_KEYS")
# event_emit refuses event types missing from plum.event_catalog (tests turn it on too).
PLUM_STRICT_EVENTS = env_bool("PLUM_STRICT_EVENTS", default=DEBUG)
# Plain-http and loopback/private URLs for channels and endpoints: development and tests only.
WEBHOOK_ALLOW_INSECURE_URLS = env_bool("WEBHOOK_ALLOW_INSECURE_URLS", default=DEBUG)
WEBHOOK_RETRY_WINDOW = timedelta(hours=int(os.environ.get("WEBHOOK_RETRY_WINDOW_HOURS", "24")))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "60"))
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))
WEBHOOK_DISABLE_AFTER_FAILURES = int(os.environ.get("WEBHOOK_DISABLE_AFTER_FAILURES", "50"))
WEBHOOK_SECRET_GRACE = timedelta(hours=int(os.environ.get("WEBHOOK_SECRET_GRACE_HOURS", "24")))

LOGIN_URL = "/admin/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {"plum": {"level": os.environ.get("PLUM_LOG_LEVEL", "INFO")}},
}
