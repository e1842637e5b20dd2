"""Django's SQLite backend, creating the database file's directory when it first connects.

The default database is var/db.sqlite3 (the test database var/test_db.sqlite3); a fresh
checkout has no var/, and the settings do not create it at import (a read-only checkout or
one served from PostgreSQL gets no stray directory), so the first connection does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        name = str(conn_params["database"])
        if not self.creation.is_in_memory_db(name) and not name.startswith("file:"):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        return super().get_new_connection(conn_params)
