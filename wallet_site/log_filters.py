"""Logging filters of the project's LOGGING setting."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class RefusalWithoutTraceback(logging.Filter):
    """A 403 is a person refused, not a failure: Django's request log keeps its one line
    ("Forbidden (Permission denied): /path") without the traceback of the PermissionDenied
    that refused it."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if getattr(record, "status_code", None) == 403 and isinstance(error, PermissionDenied):
            record.exc_info, record.exc_text = None, None
        return True
