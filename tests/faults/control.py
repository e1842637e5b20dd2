"""The fault matrix's operator: one process on the deployment's own settings, taking one JSON
command a line on stdin and answering one JSON line on stdout.

It does what an operator (or Celery beat) does beside the deployment: create the API token,
move the migration phase, run the outbox sweeper, and read both stores and the database to
audit a cell. Run as `python -m tests.faults.control` with the deployment's environment; a
long-lived process, so a cell does not pay Django's start-up for each step. Each command opens
a fresh database connection: the previous one may have died with a PostgreSQL outage.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from decimal import Decimal
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_site.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.db.backends.base.base import BaseDatabaseWrapper  # noqa: E402
from django.db.models import Sum  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from flags.audit import apply_state  # noqa: E402
from flags.phases import Phase, current_state, state_for_phase  # noqa: E402
from flags.write_lock import SHARE_FENCE_NAME, advisory_key  # noqa: E402
from migration import tasks  # noqa: E402
from migration.models import ReadRouteCount  # noqa: E402
from migration.runtime import process_runtime  # noqa: E402

ACTOR = "fault-matrix"
# Replies are the lines that start with this; anything else on stdout is a log line.
REPLY_MARK = "@@reply "
# A session of its own that holds the share fence and sits idle (`hold_fence`): what a
# leaked lock looks like, so the matrix can show its check finds one.
_fence_session: BaseDatabaseWrapper | None = None


def setup() -> dict[str, Any]:
    """A superuser's API token: the traffic credits, debits, voids and reads with it."""
    user, _ = get_user_model().objects.get_or_create(
        username=ACTOR, defaults={"is_superuser": True, "is_staff": True}
    )
    _, token = AuthToken.objects.create(user=user, expiry=None)
    return {"token": token}


def enter_phase(phase: int) -> dict[str, Any]:
    """Set the phase's flags as the runbook's step would leave them (no traffic runs during
    the step): from phase 0 the backfill imports the wallets born there, and before phase 4
    the mirror is drained, as the step's drain does."""
    before = current_state().phase
    if before == Phase.LEGACY and phase > Phase.LEGACY:
        apply_state(state_for_phase(Phase.DUAL_WRITE), actor=ACTOR)
        process_runtime().backfill().run(page_size=500, progress=False)
    if phase == Phase.TIGERBEETLE_ONLY:
        tasks.sweep_outbox()
    apply_state(
        state_for_phase(Phase(phase), shadow_percent=Decimal(100), rollout_percent=Decimal(100)),
        actor=ACTOR,
    )
    return {"phase": int(current_state().phase)}


def sweep() -> dict[str, Any]:
    """What Celery beat's outbox sweeper does, once, here."""
    return tasks.sweep_outbox()


def audit(client_ids: list[str]) -> dict[str, Any]:
    """Both stores' balances of each client's wallets, the outbox, and what must not stay
    held after an outage: the write pause, advisory locks (the write lock, the share fence),
    with who holds them."""
    runtime = process_runtime()
    state = current_state()
    wallets: dict[str, Any] = {}
    for client_id in client_ids:
        mongo = {
            b.key.describe(): list(b.fields_minor()) for b in runtime.mongo.get_balances(client_id)
        }
        tigerbeetle = {}
        if state.phase >= Phase.DUAL_WRITE:
            tigerbeetle = {
                b.key.describe(): list(b.fields_minor())
                for b in runtime.tigerbeetle.get_balances(client_id)
            }
        wallets[client_id] = {"mongo": mongo, "tigerbeetle": tigerbeetle}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.pid, l.classid, l.objid, l.mode, a.state, left(a.query, 80), "
            "a.client_port, a.backend_start, a.state_change, "
            "extract(epoch FROM clock_timestamp() - a.state_change) "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory'"
        )
        advisory_rows = [list(map(str, row)) for row in cursor.fetchall()]
        advisory_locks = len(advisory_rows)
    routes = {
        row["route"]: row["total"]
        for row in ReadRouteCount.objects.values("route").annotate(total=Sum("count"))
    }
    depth = runtime.outbox.depth()
    return {
        "phase": int(state.phase),
        "writes_paused": state.writes_paused,
        "advisory_locks": advisory_locks,
        "advisory_lock_holders": advisory_rows,
        "outbox": {
            "pending": depth.pending,
            "parked": depth.parked,
            "awaiting_backfill": depth.awaiting_backfill,
        },
        "read_routes": routes,
        "wallets": wallets,
    }


def hold_fence() -> dict[str, Any]:
    """Take the share fence shared on a session of its own and leave it idle."""
    global _fence_session
    assert _fence_session is None, "the fence is already held"
    _fence_session = connections.create_connection("default")
    with _fence_session.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock_shared(%s)", [advisory_key(SHARE_FENCE_NAME)])
    return {}


def let_go_fence() -> dict[str, Any]:
    """Close the session `hold_fence` opened (which releases its lock)."""
    global _fence_session
    if _fence_session is not None:
        _fence_session.close()
        _fence_session = None
    return {}


def answer(command: dict[str, Any]) -> dict[str, Any]:
    connection.close()
    op = command["op"]
    if op == "setup":
        return setup()
    if op == "phase":
        return enter_phase(int(command["phase"]))
    if op == "sweep":
        return sweep()
    if op == "audit":
        return audit(list(command["clients"]))
    if op == "hold_fence":
        return hold_fence()
    if op == "let_go_fence":
        return let_go_fence()
    raise ValueError(f"unknown command {op!r}")


def main() -> None:
    for line in sys.stdin:
        try:
            reply = {"ok": True, **answer(json.loads(line))}
        except Exception as exc:
            reply = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(),
            }
        sys.stdout.write(REPLY_MARK + json.dumps(reply, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
