"""Settings, all from the environment (django-environ) with embedded defaults.

A fresh checkout needs no server: SQLite, Django's local-memory cache, eager Celery,
the embedded ledger engine, and an embedded MongoDB-protocol server that `make run`
starts. Every variable is listed in the README.
"""

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from wallet_site.embedded_mongo import DEFAULT_TRANSACTION_LIFETIME_S
from wallet_site.local_worker import filesystem_broker_options, is_filesystem_broker

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# Made where it is needed (the SQLite backend, rundev, the local TigerBeetle), not here.
# WALLET_VAR_DIR moves it: two test runs of one checkout at once (CI's passes) keep apart.
VAR_DIR = Path(env("WALLET_VAR_DIR", default=str(BASE_DIR / "var")))


def rollout_steps(values: list[str], *, name: str = "READ_ROLLOUT_STEPS") -> tuple[Decimal, ...]:
    """A share's steps (READ_ROLLOUT_STEPS, DUAL_WRITE_SHARE_STEPS) as ascending percentages
    above 0, ending with 100."""
    try:
        steps = sorted({Decimal(value.strip()) for value in values if value.strip()})
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"{name} must be percentages: {values}") from exc
    if any(not Decimal(0) < step <= Decimal(100) for step in steps):
        raise ImproperlyConfigured(f"{name} must be above 0 and at most 100: {values}")
    return (*(step for step in steps if step < 100), Decimal(100))


def amounts_by_currency(raw: str, *, name: str) -> dict[str, Decimal]:
    """ "USD=1000,JPY=150000,*=1000" (django-environ's dict form) as currency -> amount, "*"
    for every currency not named, which must be there; a bare amount ("1000") is "*" alone;
    empty: none."""
    raw = raw.strip()
    if not raw:
        return {}
    pairs = environ.Env.parse_value(raw, dict) if "=" in raw else {"*": raw}
    amounts: dict[str, Decimal] = {}
    for code, text in pairs.items():
        currency = code.strip().upper()
        if currency != "*" and not (len(currency) == 3 and currency.isalpha()):
            raise ImproperlyConfigured(f"{name}: {code!r} is not a currency code or *")
        try:
            amount = Decimal(text.strip())
        except InvalidOperation as exc:
            raise ImproperlyConfigured(f"{name}: {text!r} is not an amount") from exc
        if not amount.is_finite() or amount < 0:
            raise ImproperlyConfigured(f"{name}: {text!r} is not an amount of 0 or more")
        amounts[currency] = amount
    if "*" not in amounts:
        raise ImproperlyConfigured(f"{name} needs *=AMOUNT: the amount of every other currency")
    return amounts


def fraction(name: str, *, default: str) -> Decimal:
    """A rate setting: a decimal fraction from 0 to 1 (0.01 is 1 %), never a float."""
    raw = env(name, default=default)
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"{name} must be a fraction such as 0.01: {raw!r}") from exc
    if not Decimal(0) <= value <= Decimal(1):
        raise ImproperlyConfigured(f"{name} must be between 0 and 1 (0.01 is 1 %): {raw!r}")
    return value


environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key-change-me")
# Off unless asked for (`make run` asks): a 500 with DEBUG on shows settings and URLs in clear.
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

# --- HTTPS (production defaults; see the README's deployment section) ---------
# The site is served over HTTPS by a TLS-terminating reverse proxy. On unless DEBUG is; the
# test suite sets DJANGO_HTTPS=false (pyproject's pytest env) to speak plain HTTP.
HTTPS = env.bool("DJANGO_HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=HTTPS)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=HTTPS)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=HTTPS)
# The proxy terminates TLS and says so in X-Forwarded-Proto (it must overwrite any value a
# client sent); without this the SSL redirect would loop.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("DJANGO_TRUST_X_FORWARDED_PROTO", default=HTTPS)
    else None
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "backoffice.apps.BackOfficeAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "backoffice.apps.FeatureFlagsConfig",  # django-waffle, "Feature flags" in the admin
    "axes",  # lockout after failed sign-ins (staff accounts, issue 27)
    "django_otp",  # two factors for staff who move money (issue 27)
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",  # the recovery codes
    "wallet_site",
    "ledger",
    "ledger.engine",
    "migration",
    "registry",
    "flags",
    "staff",
    "events",
    "backoffice",
]

MIDDLEWARE = [
    # First: /healthz and /readyz for load balancers (no auth, host check or HTTPS redirect).
    "backoffice.health.HealthProbeMiddleware",
    # Then: every other answer counted per route name and status (/metrics), as sent.
    "wallet_site.request_metrics.RequestMetricsMiddleware",
    # Every error answer under /api/ becomes the JSON error shape.
    "api.middleware.ApiJsonErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session gave a second factor; then the admin
    # pages wait for it from staff who need one (staff/two_factor.py).
    "django_otp.middleware.OTPMiddleware",
    "staff.two_factor.SecondFactorRequiredMiddleware",
    "backoffice.middleware.FlagActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "waffle.middleware.WaffleMiddleware",
    # Last (django-axes' rule): answers a locked-out sign-in with staff.lockout's page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "wallet_site.urls"
WSGI_APPLICATION = "wallet_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database ---------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, creating the file's directory (var/) on the first connection.
    DATABASES["default"]["ENGINE"] = "wallet_site.db.sqlite3"
    # Writers take the lock at BEGIN so concurrent processes queue instead of failing
    # on a lock upgrade; WAL lets readers run beside the one writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.float("SQLITE_BUSY_TIMEOUT_S", default=30.0),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not :memory:, so that test subprocesses and threads share one database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": env("DATABASE_TEST_NAME", default=None)}
# Each gunicorn thread and Celery worker keeps its connection between requests: opening one
# per request (PostgreSQL forks a backend for it) cost a loaded worker more than its wallet
# work. A reused connection is checked first, so one the server dropped is replaced.
DATABASES["default"]["CONN_MAX_AGE"] = env.float("DATABASE_CONN_MAX_AGE_S", default=60.0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (the registries' key -> id cache) ---------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # A miss when Redis is down or slower than REDIS_CACHE_TIMEOUT_S, never an error:
            # everything cached can be read from the database (wallet_site/cache.py).
            "BACKEND": "wallet_site.cache.DegradingRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="wallet"),
            "OPTIONS": {
                "socket_connect_timeout": env.float("REDIS_CACHE_TIMEOUT_S", default=0.5),
                "socket_timeout": env.float("REDIS_CACHE_TIMEOUT_S", default=0.5),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- MongoDB (legacy wallet store) -------------------------------------------
MONGO_URL = env("MONGO_URL", default="mongodb://127.0.0.1:27017/wallet?directConnection=true")
MONGO_EMBEDDED_PORT = env.int("MONGO_EMBEDDED_PORT", default=27017)
# Server selection, connect and socket timeout: past it the store answers 503, not a hang.
MONGO_TIMEOUT_S = env.float("MONGO_TIMEOUT_S", default=5.0)
# How long a write keeps retrying on a wallet another transaction holds before answering 503
# store_unavailable (the client retries with the same id): a wallet locked by a dead worker's
# transaction must not tie up every worker.
MONGO_LOCK_WAIT_S = env.float("MONGO_LOCK_WAIT_S", default=2.0)
# The embedded server's (`make run`) transaction lifetime: a transaction abandoned by a
# killed process releases its wallet after this many idle seconds. On a real mongod set
# transactionLifetimeLimitSeconds instead.
MONGO_TRANSACTION_LIFETIME_S = env.float(
    "MONGO_TRANSACTION_LIFETIME_S", default=DEFAULT_TRANSACTION_LIFETIME_S
)

# The store the wallet service uses: "phased" (the migration flags route between MongoDB and
# TigerBeetle), or one store pinned: "mongo" or "tigerbeetle".
WALLET_STORE = env("WALLET_STORE", default="phased")

# --- TigerBeetle ---------------------------------------------------------------
# Empty TB_ADDRESSES selects the embedded engine (TigerBeetle semantics on DATABASES).
TB_ADDRESSES = env("TB_ADDRESSES", default="")
TB_CLUSTER_ID = env.int("TB_CLUSTER_ID", default=0)
# ClientSync waits forever for a replica; past this a request fails as LedgerUnavailable.
TB_REQUEST_TIMEOUT_S = env.float("TB_REQUEST_TIMEOUT_S", default=5.0)
# `make run` only: a TigerBeetle server binary to format and start a local single-replica
# cluster with (data under var/tigerbeetle/, listening on TB_LOCAL_PORT) when TB_ADDRESSES is
# empty. Unset: the embedded engine.
TB_BINARY = env("TB_BINARY", default="")
TB_LOCAL_PORT = env.int("TB_LOCAL_PORT", default=3000)
# Mixed into every derived id (domain/ids.py) when set: deployments or test runs sharing one
# cluster never derive the same ids. Empty: the ids every deployment has used so far.
TB_ID_NAMESPACE = env("TB_ID_NAMESPACE", default="")
# This application's account codes: they mark its accounts on a cluster other applications
# share, and reconciliation looks only at them (design.md, "TigerBeetle data model").
TB_WALLET_ACCOUNT_CODE = env.int("TB_WALLET_ACCOUNT_CODE", default=7101)
TB_SYSTEM_ACCOUNT_CODE = env.int("TB_SYSTEM_ACCOUNT_CODE", default=7102)
# The accounts behind the balance limit (ledger/tb_model.py): one limit account per wallet,
# and the older limit-probe account of each ledger. Its earlier name is still read.
TB_LIMIT_ACCOUNT_CODE = env.int(
    "TB_LIMIT_ACCOUNT_CODE", default=env.int("TB_LIMIT_PROBE_ACCOUNT_CODE", default=7103)
)

# --- Celery ------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
# `filesystem://`: kombu's filesystem transport, message files under this folder (`make run`
# starts its worker and beat on it: wallet_site/local_worker.py).
CELERY_FILESYSTEM_BROKER_DIR = Path(
    env("CELERY_FILESYSTEM_BROKER_DIR", default=str(VAR_DIR / "celery"))
)
if is_filesystem_broker(CELERY_BROKER_URL):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(CELERY_FILESYSTEM_BROKER_DIR)
else:
    # Queueing a task from a request tries the broker once more after a failure, not for
    # seconds: a broker that is down must not hold a write's answer (its mirror task waits in
    # the outbox for the sweeper). Found by the fault matrix: 6 s per write before.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT_S", default=2.0)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL or None)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="wallet")

# --- Migration (issue 4; see docs/migration.md) -----------------------------
# A mirror entry that failed this many runs (TigerBeetle unreachable) is parked for support.
MIRROR_PARK_AFTER_ATTEMPTS = env.int("MIRROR_PARK_AFTER_ATTEMPTS", default=20)
# Celery beat: how often the sweeper mirrors what no on-commit task picked up.
MIRROR_SWEEP_INTERVAL_S = env.float("MIRROR_SWEEP_INTERVAL_S", default=30.0)
# The back-office warns (not only informs) when a write has waited this long for the mirror.
OUTBOX_PENDING_WARN_S = env.float("OUTBOX_PENDING_WARN_S", default=300.0)
# Celery beat: how often reconciliation compares every wallet in both stores.
RECONCILE_INTERVAL_S = env.float("RECONCILE_INTERVAL_S", default=3600.0)
# Celery beat: how often MongoDB's holds past their expiry are released in wallets no write
# touched meanwhile (a write of a wallet, and a read, count them out at once; docs/holds.md).
HOLD_SWEEP_INTERVAL_S = env.float("HOLD_SWEEP_INTERVAL_S", default=30.0)
# Celery beat: how often expired API tokens are deleted (requests check only their own).
TOKEN_PURGE_INTERVAL_S = env.float("TOKEN_PURGE_INTERVAL_S", default=3600.0)
# Optional: each alert (`migration.alerts`: shadow and reconciliation mismatches, the guard) is
# POSTed here as JSON when it opens. RECONCILE_ALERT_WEBHOOK_URL, its earlier name, still works.
ALERT_WEBHOOK_URL = env("ALERT_WEBHOOK_URL", default=env("RECONCILE_ALERT_WEBHOOK_URL", default=""))
# Where people reach the back-office: an alert's links are this plus the admin's path.
BACKOFFICE_BASE_URL = env("BACKOFFICE_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Phase 3 TigerBeetle reads (the plan's Polly policies): a failed read is retried this many
# times, the n-th retry after TB_READ_RETRY_BASE_S x 2^n (0.2, 0.4, 0.8 s); a read that failed
# every retry is one failure for the breaker, which opens after READ_BREAKER_FAILURES of them
# and lets one trial read through after READ_BREAKER_RESET_S; meanwhile MongoDB answers. No
# retry begins past TB_READ_RETRY_BUDGET_S since the read's first try: a TigerBeetle that does
# not answer costs a read one TB_REQUEST_TIMEOUT_S, not four.
TB_READ_RETRY_ATTEMPTS = env.int("TB_READ_RETRY_ATTEMPTS", default=3)
TB_READ_RETRY_BASE_S = env.float("TB_READ_RETRY_BASE_S", default=0.1)
TB_READ_RETRY_BUDGET_S = env.float("TB_READ_RETRY_BUDGET_S", default=2.0)
READ_BREAKER_FAILURES = env.int("READ_BREAKER_FAILURES", default=5)
READ_BREAKER_RESET_S = env.float("READ_BREAKER_RESET_S", default=30.0)
# How long a phase change that moves where money is written waits for the writes in flight
# (which read the old phase) to finish; past it the change is refused and writes resume.
PHASE_CHANGE_WRITES_WAIT_S = env.float("PHASE_CHANGE_WRITES_WAIT_S", default=30.0)
# Entering phase 4 (migration.entry_check): inside the pause only the wallets changed since
# the latest reconciliation run that compared every wallet are compared again. That run must
# be clean and at most PHASE4_ENTRY_RUN_MAX_AGE_S old, and at most PHASE4_ENTRY_WALLETS_MAX
# wallets may have changed since (else the step is refused before the pause: run
# reconciliation again). A wallet base of at most PHASE4_ENTRY_WALLETS_MAX wallets needs no
# such run (all are compared in the pause). "Since" is the run's start less
# PHASE4_ENTRY_MARK_MARGIN_S, which must exceed the longest MongoDB write transaction and the
# clock skew between hosts.
# The backfill and reconciliation (their Celery tasks and commands) read at most this many
# MongoDB wallets a second, so they do not starve the API's clients on a shared host
# (migration.pacing; 0: no limit). A phase change's own comparison is never paced.
MIGRATION_JOB_MAX_WALLETS_PER_S = env.float("MIGRATION_JOB_MAX_WALLETS_PER_S", default=0.0)
if MIGRATION_JOB_MAX_WALLETS_PER_S < 0:
    raise ImproperlyConfigured("MIGRATION_JOB_MAX_WALLETS_PER_S must be 0 (no limit) or more")
# How long the backfill and reconciliation wait for each MongoDB answer (a request waits
# MONGO_TIMEOUT_S): a busy server is waited out, not a failed job; a server that is down
# still fails them within MONGO_TIMEOUT_S, to connect.
MIGRATION_JOB_MONGO_READ_TIMEOUT_S = env.float("MIGRATION_JOB_MONGO_READ_TIMEOUT_S", default=60.0)
if MIGRATION_JOB_MONGO_READ_TIMEOUT_S <= 0:
    raise ImproperlyConfigured("MIGRATION_JOB_MONGO_READ_TIMEOUT_S must be positive")
# How many times they try a read that got no answer in time or lost its connection before
# the run fails (2 s before the second try, 4 s before the third...): one stall of the
# server no longer ends a run of many minutes. Writes are never tried again this way.
MIGRATION_JOB_MONGO_READ_ATTEMPTS = env.int("MIGRATION_JOB_MONGO_READ_ATTEMPTS", default=3)
if MIGRATION_JOB_MONGO_READ_ATTEMPTS < 1:
    raise ImproperlyConfigured("MIGRATION_JOB_MONGO_READ_ATTEMPTS must be 1 (no retry) or more")
PHASE4_ENTRY_RUN_MAX_AGE_S = env.float("PHASE4_ENTRY_RUN_MAX_AGE_S", default=3600.0)
PHASE4_ENTRY_WALLETS_MAX = env.int("PHASE4_ENTRY_WALLETS_MAX", default=3_000)
PHASE4_ENTRY_MARK_MARGIN_S = env.float("PHASE4_ENTRY_MARK_MARGIN_S", default=120.0)
if PHASE4_ENTRY_WALLETS_MAX < 0 or PHASE4_ENTRY_MARK_MARGIN_S < 0:
    raise ImproperlyConfigured("PHASE4_ENTRY_WALLETS_MAX and _MARK_MARGIN_S must be 0 or more")
# A forward phase step is refused unless its criterion held on each of this many consecutive
# days (the seed's 7); 0 takes a step as soon as nothing else refuses it.
MIGRATION_CRITERION_DAYS = env.int("MIGRATION_CRITERION_DAYS", default=7)
if MIGRATION_CRITERION_DAYS < 0:
    raise ImproperlyConfigured("MIGRATION_CRITERION_DAYS must be 0 or more days")
# Phase 3: the read rollout rises through these shares of clients, one at a time, and past
# each only once the fallback criterion held at it (100 is always the last).
READ_ROLLOUT_STEPS = rollout_steps(
    env.list("READ_ROLLOUT_STEPS", default=["1", "5", "25", "50", "100"])
)
# Phases 1-3: the dual-write share of clients rises through these, one at a time, and each
# only once the reconciliation's match rate held (100 is always the last).
DUAL_WRITE_SHARE_STEPS = rollout_steps(
    env.list("DUAL_WRITE_SHARE_STEPS", default=["1", "5", "25", "50", "100"]),
    name="DUAL_WRITE_SHARE_STEPS",
)

# The guard (`migration.guard`, docs/migration.md "The guard"): every GUARD_INTERVAL_S it
# reads the last GUARD_WINDOW_S (never before the last flag change) and, in phase 3, steps
# the read rollout back when a rate crosses its maximum (fractions: 0.01 is 1 %) or the
# oldest pending outbox entry is older than GUARD_MAX_OUTBOX_AGE_S; in other phases it alerts.
# A rate is judged over GUARD_MIN_SAMPLES reads or comparisons at least.
GUARD_INTERVAL_S = env.float("GUARD_INTERVAL_S", default=60.0)
GUARD_WINDOW_S = env.float("GUARD_WINDOW_S", default=900.0)
GUARD_MAX_SHADOW_MISMATCH_RATE = fraction("GUARD_MAX_SHADOW_MISMATCH_RATE", default="0.001")
GUARD_MAX_FALLBACK_RATE = fraction("GUARD_MAX_FALLBACK_RATE", default="0.01")
GUARD_MAX_TB_ERROR_RATE = fraction("GUARD_MAX_TB_ERROR_RATE", default="0.005")
GUARD_MAX_OUTBOX_AGE_S = env.float("GUARD_MAX_OUTBOX_AGE_S", default=900.0)
GUARD_MIN_SAMPLES = env.int("GUARD_MIN_SAMPLES", default=100)

# The event feed (events/, docs/events.md): beat collects new movements every
# EVENTS_COLLECT_INTERVAL_S (at most EVENTS_COLLECT_MAX_BATCHES batches of
# EVENTS_COLLECT_BATCH from each change record a run; on SQLite, phase 4's outbox rows once
# EVENTS_STORE_SETTLE_S old: PostgreSQL has the movement fence) and delivers due webhooks
# every EVENTS_DELIVER_INTERVAL_S (at most EVENTS_DELIVER_BATCH a run). A delivery that is
# not answered 2xx within EVENTS_DELIVERY_TIMEOUT_S is retried after
# EVENTS_DELIVERY_BACKOFF_BASE_S x 2^(n-1) (at most EVENTS_DELIVERY_BACKOFF_MAX_S), and failed
# after EVENTS_DELIVERY_MAX_ATTEMPTS tries (defaults: 30 s, 1 min, 2, 4, ... capped at 1 h,
# 10 tries: about 4.3 hours in all).
EVENTS_COLLECT_INTERVAL_S = env.float("EVENTS_COLLECT_INTERVAL_S", default=2.0)
EVENTS_COLLECT_BATCH = env.int("EVENTS_COLLECT_BATCH", default=500)
EVENTS_COLLECT_MAX_BATCHES = env.int("EVENTS_COLLECT_MAX_BATCHES", default=20)
EVENTS_STORE_SETTLE_S = env.float("EVENTS_STORE_SETTLE_S", default=1.0)
EVENTS_DELIVER_INTERVAL_S = env.float("EVENTS_DELIVER_INTERVAL_S", default=5.0)
EVENTS_DELIVER_BATCH = env.int("EVENTS_DELIVER_BATCH", default=200)
EVENTS_DELIVERY_TIMEOUT_S = env.float("EVENTS_DELIVERY_TIMEOUT_S", default=10.0)
EVENTS_DELIVERY_MAX_ATTEMPTS = env.int("EVENTS_DELIVERY_MAX_ATTEMPTS", default=10)
EVENTS_DELIVERY_BACKOFF_BASE_S = env.float("EVENTS_DELIVERY_BACKOFF_BASE_S", default=30.0)
EVENTS_DELIVERY_BACKOFF_MAX_S = env.float("EVENTS_DELIVERY_BACKOFF_MAX_S", default=3600.0)
# How old a signature a receiver should accept (docs/events.md's example uses it).
EVENTS_SIGNATURE_TOLERANCE_S = env.int("EVENTS_SIGNATURE_TOLERANCE_S", default=300)

CELERY_BEAT_SCHEDULE = {
    "events-collect": {"task": "events.collect", "schedule": EVENTS_COLLECT_INTERVAL_S},
    "events-deliver": {"task": "events.deliver", "schedule": EVENTS_DELIVER_INTERVAL_S},
    "guard": {"task": "ledger.guard", "schedule": GUARD_INTERVAL_S},
    "mirror-sweep": {"task": "ledger.sweep_outbox", "schedule": MIRROR_SWEEP_INTERVAL_S},
    "reconcile": {"task": "ledger.reconcile", "schedule": RECONCILE_INTERVAL_S},
    "hold-sweep": {"task": "ledger.sweep_expired_holds", "schedule": HOLD_SWEEP_INTERVAL_S},
    "purge-expired-tokens": {
        "task": "wallet_site.purge_expired_tokens",
        "schedule": TOKEN_PURGE_INTERVAL_S,
    },
}

# --- Auth, i18n, static -------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# First django-axes (refuses a locked-out account and source before any password is checked),
# then Django's model permissions, read in one query per request (the API checks them on each).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "wallet_site.auth_backends.ModelBackend",
]

# --- Staff accounts (issue 27; README, "Staff accounts") -------------------------
# LOGIN_FAILURE_LIMIT failed sign-ins for one account from one address lock that pair for
# LOGIN_LOCKOUT_S (a failure while locked starts the time again); staff holding
# staff.unlock_account unlock sooner in the admin. A success resets the count.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.float("LOGIN_LOCKOUT_S", default=900.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "staff.lockout.lockout_response"
# The audit (staff.AuthEvent) records sign-ins; axes keeps only its failure counts, and its
# admin pages are replaced by the back-office's (backoffice/staff_admin.py).
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ADMIN = False
# No banner on every manage.py command and worker start; lockouts are in the audit.
AXES_VERBOSE = False
# The source is REMOTE_ADDR. Behind the TLS proxy set LOGIN_CLIENT_IP_HEADER to the header
# it writes the client's address into (e.g. HTTP_X_REAL_IP); a client cannot forge it there.
LOGIN_CLIENT_IP_HEADER = env("LOGIN_CLIENT_IP_HEADER", default="")
AXES_CLIENT_IP_CALLABLE = "staff.lockout.client_ip_address"
# A second factor (TOTP) before any admin page, for superusers and staff holding a permission
# that moves money or where it is written; with STAFF_2FA_EXEMPT_READ_ONLY off, for all staff.
STAFF_2FA_REQUIRED = env.bool("STAFF_2FA_REQUIRED", default=True)
STAFF_2FA_EXEMPT_READ_ONLY = env.bool("STAFF_2FA_EXEMPT_READ_ONLY", default=True)
# Enrolling an authenticator (the first time, or after a reset) needs a one-time code an
# administrator issued for that person (staff.issue_enrolment_code; `manage.py
# enrolment_code USER` for the first administrator), valid for STAFF_2FA_ENROLMENT_CODE_TTL_S.
STAFF_2FA_ENROLMENT_NEEDS_CODE = env.bool("STAFF_2FA_ENROLMENT_NEEDS_CODE", default=True)
STAFF_2FA_ENROLMENT_CODE_TTL_S = env.int("STAFF_2FA_ENROLMENT_CODE_TTL_S", default=72 * 3600)
# The name authenticator apps show beside the account.
OTP_TOTP_ISSUER = env("STAFF_2FA_ISSUER", default="Wallet back-office")
# Four eyes: a void of more than its currency's amount here ("*": every currency not named;
# e.g. 1000 is 1,000.00 USD) waits for a second staff member's approval; empty: every void
# is made at once.
FOUR_EYES_VOID_ABOVE = amounts_by_currency(
    env("FOUR_EYES_VOID_ABOVE", default="JPY=150000,*=1000"), name="FOUR_EYES_VOID_ABOVE"
)
# Four eyes on phase steps: one that overrides a criterion, or enters or leaves phase 4, is
# filed as a request and taken only when another person holding flags.change_phase approves
# it ("Phase approvals"; `manage.py migration_phase --approve N`), within
# FOUR_EYES_PHASE_REQUEST_EXPIRY_S; off, such steps are taken at once as before.
FOUR_EYES_PHASE_CHANGES = env.bool("FOUR_EYES_PHASE_CHANGES", default=True)
FOUR_EYES_PHASE_REQUEST_EXPIRY_S = env.int("FOUR_EYES_PHASE_REQUEST_EXPIRY_S", default=4 * 3600)
if FOUR_EYES_PHASE_REQUEST_EXPIRY_S <= 0:
    raise ImproperlyConfigured("FOUR_EYES_PHASE_REQUEST_EXPIRY_S must be more than 0")
# A session ends after this long without a request (each request starts the time again).
SESSION_IDLE_TIMEOUT_S = env.int("SESSION_IDLE_TIMEOUT_S", default=1800)
SESSION_COOKIE_AGE = SESSION_IDLE_TIMEOUT_S
SESSION_SAVE_EVERY_REQUEST = True
# Failed API token authentications from one address: past API_AUTH_FAILURE_LIMIT within
# API_AUTH_FAILURE_WINDOW_S, every request from it is answered 429
# too_many_failed_authentications until the window has passed. 0 turns it off.
API_AUTH_FAILURE_LIMIT = env.int("API_AUTH_FAILURE_LIMIT", default=20)
API_AUTH_FAILURE_WINDOW_S = env.int("API_AUTH_FAILURE_WINDOW_S", default=300)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One date and time format, with its zone, on every page: wallet_site/formats/en/formats.py.
FORMAT_MODULE_PATH = ["wallet_site.formats"]
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- REST API: who may call, how often (README, "REST API") ---------------------
# Tokens only (knox: stored hashed, expiring, revocable). No session authentication: the
# callers are payment systems with tokens, staff work in the admin, and so an admin session
# (and its CSRF exposure) never reaches the API.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.HasRequiredPermissions"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.PerTokenRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.DecimalJSONParser"],
    # JSON only: the browsable renderer answered an error asked for as text/html as an HTML
    # page (the schema UI at /api/schema/ui/ has its own renderer).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
}
# Requests per token, "N/s|min|hour|day"; empty turns throttling off.
API_THROTTLE_RATE = env("API_THROTTLE_RATE", default="6000/min")
# A token lives this many days (0: until revoked); `create_service_account --ttl-days` and
# the admin's expiry field set it per token.
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS) if API_TOKEN_TTL_DAYS else None,
    "AUTH_HEADER_PREFIX": "Token",
}

# /metrics answers only `Authorization: Bearer <METRICS_BEARER_TOKEN>` (the Prometheus
# scraper's credential); unset, it answers no one.
METRICS_BEARER_TOKEN = env("METRICS_BEARER_TOKEN", default="")

# /readyz: each dependency check is bounded by this, so a probe never hangs.
READINESS_CHECK_TIMEOUT_S = env.float("READINESS_CHECK_TIMEOUT_S", default=1.0)

# /api/schema/ and its UI: open to anonymous callers, or only to a signed-in admin session or
# an API token. Open by default only with DEBUG on.
API_SCHEMA_PUBLIC = env.bool("API_SCHEMA_PUBLIC", default=DEBUG)

SPECTACULAR_SETTINGS = {
    "TITLE": "Wallet ledger API",
    "DESCRIPTION": "The five wallet operations. Amounts are decimal strings in the wallet's "
    'currency; every error is {"error": {"code", "message", "details"}}.',
    "VERSION": "1.0.0",
    # Swagger UI's assets come from the installed sidecar package, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_AUTHENTICATION": [
        "api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # The schema states every rule the server enforces: the parameters' rules, the links
    # between operations, closed request bodies (api/schema.py). Enums stay inline where
    # api/schema.py puts them (drf-spectacular's enum hook would split "" off the currency).
    "POSTPROCESSING_HOOKS": ["api.schema.complete_schema"],
    "SERVE_PERMISSIONS": [
        "rest_framework.permissions.AllowAny"
        if API_SCHEMA_PUBLIC
        else "rest_framework.permissions.IsAuthenticated"
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "refusal_without_traceback": {"()": "wallet_site.log_filters.RefusalWithoutTraceback"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # A 403 logs its line, not the traceback of the refusal (wallet_site/log_filters.py).
    "loggers": {"django.request": {"filters": ["refusal_without_traceback"]}},
}
