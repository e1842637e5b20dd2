"""var/ (the default SQLite file, the embedded servers' data) is made where it is needed,
never by importing the settings: a read-only checkout, or one served from PostgreSQL, gets
no stray directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from django.db.utils import ConnectionHandler

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_settings_creates_no_var_directory(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "wallet_site", tmp_path / "wallet_site")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE_", "DJANGO_"))
    }
    environment["PYTHONPATH"] = str(tmp_path)

    subprocess.run(
        [sys.executable, "-c", "import wallet_site.settings"],
        cwd=tmp_path,
        env=environment,
        check=True,
    )

    assert not (tmp_path / "var").exists()


def test_connecting_to_a_sqlite_database_creates_its_directory(tmp_path: Path) -> None:
    database = tmp_path / "var" / "db.sqlite3"
    connection = ConnectionHandler(
        {"default": {"ENGINE": "wallet_site.db.sqlite3", "NAME": str(database)}}
    )["default"]
    # The backend's own connect (pytest-django guards ensure_connection; no test database).
    connection.get_new_connection(connection.get_connection_params()).close()

    assert database.exists()
