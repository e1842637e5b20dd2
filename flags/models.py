"""The audit of every flag flip, and the migration milestones phase changes wait for."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone
from django.utils.formats import date_format


class PhaseChange(models.Model):
    """One phase change as the person asked for it (who, when, from, to, their note); the
    flag flips it made point to it. A refused change is kept with the reason."""

    actor = models.CharField(max_length=150)
    note = models.CharField(max_length=500, blank=True, default="")
    from_phase = models.PositiveSmallIntegerField()
    to_phase = models.PositiveSmallIntegerField()
    refused = models.CharField(max_length=500, blank=True, default="", help_text="why not")
    changed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # A forward step: the criterion it waited for, with its figures as they stood (statement,
    # day by day, days held of those needed, acknowledged legacy wallets set aside).
    criterion = models.JSONField(default=dict, blank=True)
    overridden = models.BooleanField(
        default=False, help_text="taken although its criterion had not held, by an override"
    )
    override_reason = models.TextField(blank=True, default="")
    # A step back the guard took (`migration.guard`, actor "guard"): the figures of its
    # window and the thresholds they crossed.
    guard_figures = models.JSONField(default=dict, blank=True)
    # Four eyes (staff.PhaseApproval): the second person who approved the step the actor
    # asked for, or "break glass" for a step taken alone in an emergency.
    approved_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-changed_at", "-id"]
        permissions = [
            (
                "override_phase_criterion",
                "Can take a forward phase step whose criterion has not held (with a reason)",
            )
        ]

    def __str__(self) -> str:
        return f"phase {self.from_phase} -> {self.to_phase} by {self.actor}"


class FlagChange(models.Model):
    """One flip of a migration flag: who, when, from what to what."""

    flag_name = models.CharField(max_length=100, db_index=True)
    flag_kind = models.CharField(max_length=10)  # switch / sample / flag
    old_value = models.CharField(max_length=50, blank=True, default="")
    new_value = models.CharField(max_length=50)
    actor = models.CharField(max_length=150)
    note = models.CharField(max_length=500, blank=True, default="")
    changed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    phase_change = models.ForeignKey(
        PhaseChange,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="flag_changes",
        help_text="the phase change that made this flip (none: flipped on its own)",
    )

    class Meta:
        ordering = ["-changed_at", "-id"]
        permissions = [("change_phase", "Can change the migration phase and its flags")]

    def __str__(self) -> str:
        return f"{self.flag_name}: {self.old_value or '-'} -> {self.new_value} by {self.actor}"


class Milestone(models.Model):
    """A migration step that happened (e.g. the backfill completed), gating later phases."""

    BACKFILL_COMPLETED = "backfill_completed"
    ENTERED_TIGERBEETLE_ONLY = "entered_tigerbeetle_only"

    name = models.CharField(max_length=50, unique=True)
    reached_at = models.DateTimeField()
    detail = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.name.replace('_', ' ')} at {_when(self.reached_at)}"


def _when(moment: datetime) -> str:
    """A time as every page shows it: the project's one format, with its zone."""
    return date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")
