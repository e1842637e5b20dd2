"""Every write to a migration flag is audited, and only a phase change may make one.

`apply_state` and `set_writes_paused` (called by `migration.phase_change.change_phase`) are the
only writers; a save or delete of a migration flag from anywhere else (waffle's admin, the
shell, waffle's commands) is refused by the pre_save/pre_delete signals, for every user. The
signals must stay signals: they are the one hook every write path of waffle's models passes.
The actor comes from a context variable: the admin middleware and `apply_state` set it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.db import transaction
from waffle import get_waffle_sample_model, get_waffle_switch_model

from flags.models import FlagChange, PhaseChange
from flags.phases import (
    DUAL_WRITE,
    DUAL_WRITE_SHARE,
    DUAL_WRITE_SHARE_DEFAULT,
    READ_CUTOVER,
    READ_ROLLOUT,
    SAMPLES,
    SHADOW_READ,
    SWITCHES,
    TIGERBEETLE_ONLY,
    WRITES_PAUSED,
    InvalidPhaseChange,
    MigrationState,
)

current_phase_change: contextvars.ContextVar[PhaseChange | None] = contextvars.ContextVar(
    "phase_change", default=None
)
current_actor: contextvars.ContextVar[str] = contextvars.ContextVar("flag_actor", default="system")
current_note: contextvars.ContextVar[str] = contextvars.ContextVar("flag_note", default="")
# True while apply_state sets a whole, already validated state flag by flag.
_applying_state: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "applying_state", default=False
)


@contextmanager
def acting_as(actor: str, *, note: str = "") -> Iterator[None]:
    actor_token, note_token = current_actor.set(actor), current_note.set(note)
    try:
        yield
    finally:
        current_actor.reset(actor_token)
        current_note.reset(note_token)


@contextmanager
def recording_phase_change(
    actor: str, *, note: str, from_phase: int, to_phase: int, approved_by: str = ""
) -> Iterator[PhaseChange]:
    """One audit row for a phase change the person asked for (and who approved it, under
    four eyes); every flag flip made inside points to it. A refusal is kept on the row with
    its reason, and re-raised."""
    change = PhaseChange.objects.create(
        actor=actor,
        note=note,
        from_phase=from_phase,
        to_phase=to_phase,
        approved_by=approved_by,
    )
    token = current_phase_change.set(change)
    try:
        yield change
    except InvalidPhaseChange as exc:
        change.refused = str(exc)[:500]
        change.save(update_fields=["refused"])
        raise
    finally:
        current_phase_change.reset(token)


def record_step_criterion(
    change: PhaseChange, *, criterion: dict[str, Any], overridden: bool, override_reason: str
) -> None:
    """Keep on the change's audit row the criterion its step waited for, with its figures as
    they stood, and whether an override (with its reason) lifted it."""
    change.criterion = criterion
    change.overridden = overridden
    change.override_reason = override_reason if overridden else ""
    change.save(update_fields=["criterion", "overridden", "override_reason"])


def record_guard_figures(change: PhaseChange, figures: dict[str, Any]) -> None:
    """Keep on the audit row of a step the guard took the figures that made it take it."""
    change.guard_figures = figures
    change.save(update_fields=["guard_figures"])


def flag_value(instance: Any) -> str:
    """A switch as on/off, a sample as its percent: how the audit records values."""
    if hasattr(instance, "percent"):
        return str(instance.percent)
    return "on" if instance.active else "off"


def remember_old_value(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Keep the old value for the audit, and refuse any write to a migration flag (a flip,
    a rename to or from its name, a new row with its name) made outside a phase change."""
    previous = sender.objects.filter(pk=instance.pk).first() if instance.pk else None
    if previous is None and instance.name:
        previous = sender.objects.filter(name=instance.name).first()
    instance._audit_old_value = flag_value(previous) if previous else ""
    refuse_outside_phase_change({instance.name, previous.name if previous else ""})


def refuse_deleting(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Deleting a migration flag would turn it off without a phase change."""
    refuse_outside_phase_change({instance.name})


def refuse_outside_phase_change(names: set[str]) -> None:
    """Where money is written changes only through `migration.phase_change.change_phase` (its
    checks, drain, copy-back and audit), which writes the flags through `apply_state` and
    `set_writes_paused`; any other write to a migration flag is refused, whoever makes it."""
    touched = sorted(names & set(SWITCHES + SAMPLES))
    if touched and not _applying_state.get():
        raise InvalidPhaseChange(
            f"{', '.join(touched)} is a migration flag: it changes only through a phase "
            "change on the admin's Migration phase page (operators: `manage.py "
            "migration_phase`), which drains the mirror, copies writes back and audits it"
        )


def record_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.name not in SWITCHES + SAMPLES:
        return
    # waffle flushes its cache on commit; flush now as well, so code later in the same
    # transaction (a phase change, a test) reads the new value, not the cached old one.
    instance.flush()
    old, new = getattr(instance, "_audit_old_value", ""), flag_value(instance)
    resting = ("off", "0")
    if instance.name == DUAL_WRITE_SHARE:
        resting = (str(DUAL_WRITE_SHARE_DEFAULT), f"{DUAL_WRITE_SHARE_DEFAULT:.1f}")
    if old == new or (not old and new in resting):
        return  # unchanged, or created in its resting state (the share: every client)
    FlagChange.objects.create(
        flag_name=instance.name,
        flag_kind="sample" if hasattr(instance, "percent") else "switch",
        old_value=old,
        new_value=new,
        actor=current_actor.get(),
        note=current_note.get(),
        phase_change=current_phase_change.get(),
    )


def set_writes_paused(paused: bool, *, actor: str, note: str = "") -> None:
    """Hold (or release) every wallet write while a phase change moves the primary store."""
    applying = _applying_state.set(True)
    try:
        with acting_as(actor, note=note):
            switch, _ = get_waffle_switch_model().objects.get_or_create(
                name=WRITES_PAUSED, defaults={"active": False}
            )
            if switch.active != paused:
                switch.active = paused
                switch.save()
    finally:
        _applying_state.reset(applying)


def apply_state(state: MigrationState, *, actor: str, note: str = "") -> None:
    """Set every flag of `state` at once (one transaction), audited as `actor`."""
    if state.problems():
        raise InvalidPhaseChange("; ".join(state.problems()))
    switches = {
        DUAL_WRITE: state.dual_write,
        READ_CUTOVER: state.read_cutover,
        TIGERBEETLE_ONLY: state.tigerbeetle_only,
    }
    samples = {
        SHADOW_READ: state.shadow_read_percent,
        READ_ROLLOUT: state.read_rollout_percent,
        DUAL_WRITE_SHARE: state.dual_write_percent,
    }
    applying = _applying_state.set(True)
    try:
        _apply(switches, samples, actor=actor, note=note)
    finally:
        _applying_state.reset(applying)


def _apply(
    switches: dict[str, bool],
    samples: dict[str, Decimal],
    *,
    actor: str,
    note: str,
) -> None:
    switch_model, sample_model = get_waffle_switch_model(), get_waffle_sample_model()
    with acting_as(actor, note=note), transaction.atomic():
        for name, active in switches.items():
            switch, _ = switch_model.objects.get_or_create(name=name, defaults={"active": False})
            if switch.active != active:
                switch.active = active
                switch.save()
        for name, percent in samples.items():
            resting = Decimal(0)
            if name == DUAL_WRITE_SHARE:
                # No row means every client: the row is made when the share first differs.
                resting = DUAL_WRITE_SHARE_DEFAULT
                if percent == resting and not sample_model.objects.filter(name=name).exists():
                    continue
            sample, _ = sample_model.objects.get_or_create(name=name, defaults={"percent": resting})
            if sample.percent != percent:
                sample.percent = percent
                sample.save()
