"""Every write to a migration flag is audited, whoever makes it (admin, command, shell).

The actor comes from a context variable: the admin middleware and `apply_state` set it;
a flip with nobody named is recorded as "system".
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

from django.db import transaction
from waffle import get_waffle_sample_model, get_waffle_switch_model

from flags.models import FlagChange, PhaseChange
from flags.phases import (
    DUAL_WRITE,
    READ_CUTOVER,
    READ_ROLLOUT,
    SAMPLES,
    SHADOW_READ,
    SWITCHES,
    TIGERBEETLE_ONLY,
    WRITES_PAUSED,
    InvalidPhaseChange,
    MigrationState,
    current_state,
)

_FIELD_OF = {
    DUAL_WRITE: "dual_write",
    READ_CUTOVER: "read_cutover",
    SHADOW_READ: "shadow_read_percent",
    READ_ROLLOUT: "read_rollout_percent",
}

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
def acting_as(actor: str, note: str = "") -> Iterator[None]:
    actor_token, note_token = current_actor.set(actor), current_note.set(note)
    try:
        yield
    finally:
        current_actor.reset(actor_token)
        current_note.reset(note_token)


@contextmanager
def recording_phase_change(
    actor: str, note: str, *, from_phase: int, to_phase: int
) -> Iterator[PhaseChange]:
    """One audit row for a phase change the person asked for; every flag flip made inside
    points to it. A refusal is kept on the row with its reason, and re-raised."""
    change = PhaseChange.objects.create(
        actor=actor, note=note, from_phase=from_phase, to_phase=to_phase
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


def flag_value(instance: Any) -> str:
    """A switch as on/off, a sample as its percent: how the audit records values."""
    if hasattr(instance, "percent"):
        return str(instance.percent)
    return "on" if instance.active else "off"


def remember_old_value(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Keep the old value for the audit, and refuse a single flip that breaks the rules."""
    previous = sender.objects.filter(pk=instance.pk).first() if instance.pk else None
    if previous is None and instance.name:
        previous = sender.objects.filter(name=instance.name).first()
    instance._audit_old_value = flag_value(previous) if previous else ""
    if instance.name in SWITCHES + SAMPLES and not _applying_state.get():
        check_single_flip(instance.name, flag_value(instance), instance._audit_old_value)


def check_single_flip(name: str, new_value: str, old_value: str) -> None:
    """A flip of one flag (admin, shell) must leave a valid state; the phase changes that
    move where money is written only go through `ledger.migration.change_phase`."""
    if new_value == old_value or (not old_value and new_value in ("off", "0")):
        return
    if name in (TIGERBEETLE_ONLY, WRITES_PAUSED):
        raise InvalidPhaseChange(
            f"{name} is set by a phase change, which drains the mirror first: use "
            "`manage.py migration_phase` or the phase page of the admin"
        )
    state = current_state()
    if name in SWITCHES:
        state = replace(state, **{_FIELD_OF[name]: new_value == "on"})
    else:
        state = replace(state, **{_FIELD_OF[name]: Decimal(new_value)})
    if state.problems():
        raise InvalidPhaseChange("; ".join(state.problems()))


def record_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.name not in SWITCHES + SAMPLES:
        return
    # waffle flushes its cache on commit; flush now as well, so code later in the same
    # transaction (a phase change, a test) reads the new value, not the cached old one.
    instance.flush()
    old, new = getattr(instance, "_audit_old_value", ""), flag_value(instance)
    if old == new or (not old and new in ("off", "0")):
        return  # unchanged, or created in its resting state
    FlagChange.objects.create(
        flag_name=instance.name,
        flag_kind="sample" if hasattr(instance, "percent") else "switch",
        old_value=old,
        new_value=new,
        actor=current_actor.get(),
        note=current_note.get(),
        phase_change=current_phase_change.get(),
    )


def set_writes_paused(paused: bool, actor: str, note: str = "") -> None:
    """Hold (or release) every wallet write while a phase change moves the primary store."""
    applying = _applying_state.set(True)
    try:
        with acting_as(actor, note):
            switch, _ = get_waffle_switch_model().objects.get_or_create(
                name=WRITES_PAUSED, defaults={"active": False}
            )
            if switch.active != paused:
                switch.active = paused
                switch.save()
    finally:
        _applying_state.reset(applying)


def apply_state(state: MigrationState, actor: str, note: str = "") -> None:
    """Set every flag of `state` at once (one transaction), audited as `actor`."""
    if state.problems():
        raise InvalidPhaseChange("; ".join(state.problems()))
    switches = {
        DUAL_WRITE: state.dual_write,
        READ_CUTOVER: state.read_cutover,
        TIGERBEETLE_ONLY: state.tigerbeetle_only,
    }
    samples = {SHADOW_READ: state.shadow_read_percent, READ_ROLLOUT: state.read_rollout_percent}
    applying = _applying_state.set(True)
    try:
        _apply(switches, samples, actor, note)
    finally:
        _applying_state.reset(applying)


def _apply(
    switches: dict[str, bool],
    samples: dict[str, Decimal],
    actor: str,
    note: str,
) -> None:
    switch_model, sample_model = get_waffle_switch_model(), get_waffle_sample_model()
    with acting_as(actor, note), transaction.atomic():
        for name, active in switches.items():
            switch, _ = switch_model.objects.get_or_create(name=name, defaults={"active": False})
            if switch.active != active:
                switch.active = active
                switch.save()
        for name, percent in samples.items():
            sample, _ = sample_model.objects.get_or_create(name=name, defaults={"percent": 0})
            if sample.percent != percent:
                sample.percent = percent
                sample.save()
