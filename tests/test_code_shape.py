"""The code's shape (issue #20), read from the source with `ast` and `tokenize`: no class over
350 lines; no function of the application or the bench takes two or more positional
parameters of one annotated type in a row (a caller could swap them unnoticed) unless a
framework or a queued message fixes its signature; every `type: ignore` names its error code
and says why after it, on its own line."""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Not the project's own code: the virtualenv, run data, Django's generated migrations, caches.
NOT_PROJECT_DIRS = frozenset({".venv", "var", "migrations", "__pycache__"})
# The application's packages and the bench; its top-level scripts (manage.py, gunicorn's
# config) are scanned with them.
APPLICATION_DIRS = (
    "api",
    "backoffice",
    "domain",
    "flags",
    "ledger",
    "migration",
    "registry",
    "wallet_site",
    "bench",
)
CLASS_LINES_MAX = 350

# Signatures whose callers pass their same-typed parameters positionally, outside our code:
# kept positional, and named here one by one ("path::Class.function").
POSITIONAL_RUNS_ALLOWED = frozenset(
    {
        # DRF calls a view's handler with the URL's captured parameters.
        "api/views.py::WalletCreditsView.post",
        "api/views.py::WalletDebitsView.post",
        "api/views.py::WalletBalanceView.get",
        "api/history_views.py::WalletHistoryView.get",
        "api/statement_views.py::WalletStatementView.get",
        "api/hold_views.py::WalletHoldsView.post",
        # Django's admin builds a list filter with (field, request, params, model,
        # model_admin, field_path) and calls change_view(request, object_id, form_url,
        # extra_context) positionally.
        "backoffice/admin_base.py::CachedValuesFilter.__init__",
        "backoffice/flag_admin.py::_MigrationFlagsReadOnly.change_view",
        "backoffice/migration_admin.py::ReconciliationMismatchAdmin.change_view",
        "backoffice/transfer_admin.py::WalletTransferAdmin.change_view",
        "backoffice/wallet_admin.py::WalletAccountAdmin.change_view",
        # Django's model signals call their receivers with (sender, instance, ...).
        "flags/audit.py::remember_old_value",
        "flags/audit.py::refuse_deleting",
        "flags/audit.py::record_change",
        # The tigerbeetle client library (0.17.9) calls these overrides as it calls its own.
        "ledger/backends/tigerbeetle_client.py::DeadlineClient._acquire_packet",
        "ledger/backends/tigerbeetle_client.py::DeadlineClient._submit",
        # Django's query compiler calls as_sql / as_<vendor>(compiler, connection, ...).
        "registry/models.py::AnyOf.as_sql",
        "registry/models.py::IsTbIdHex.as_sql",
        "registry/models.py::IsTbIdHex.as_sqlite",
        # gunicorn calls its server hooks as hook(server, worker).
        "gunicorn.conf.py::post_fork",
        # gunicorn calls its util.write_error(sock, status_int, reason, mesg), replaced by this.
        "wallet_site/gunicorn_errors.py::write_json_error",
        # Django's RedisCache calls its client's methods positionally (key, value, timeout).
        "wallet_site/cache.py::DegradingRedisCacheClient.add",
        "wallet_site/cache.py::DegradingRedisCacheClient.get",
        "wallet_site/cache.py::DegradingRedisCacheClient.set",
        "wallet_site/cache.py::DegradingRedisCacheClient.set_many",
        "wallet_site/cache.py::DegradingRedisCacheClient.touch",
        # A Celery task with such a run belongs here too: messages already queued carry its
        # arguments positionally (none has one today: compare_shadow_read's two ints are
        # `int` and `int | None`).
    }
)

_TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore")
# The code(s) in brackets, then a comment of its own that says why.
_TYPE_IGNORE_EXPLAINED = re.compile(r"#\s*type:\s*ignore\[[a-z0-9-]+(,\s*[a-z0-9-]+)*\]\s+#\s*\S")


def python_files(*tops: str) -> list[Path]:
    """The project's Python files under `tops` (all of it when none), as paths from ROOT."""
    found: list[Path] = []
    for top in tops or (".",):
        for directory, subdirectories, files in os.walk(ROOT / top):
            subdirectories[:] = [
                name
                for name in subdirectories
                if name not in NOT_PROJECT_DIRS and not name.startswith(".")
            ]
            found += [
                (Path(directory) / name).relative_to(ROOT) for name in files if name.endswith(".py")
            ]
    return sorted(found)


def application_files() -> list[Path]:
    return python_files(*APPLICATION_DIRS) + sorted(
        path.relative_to(ROOT) for path in ROOT.glob("*.py")
    )


@cache
def source(path: Path) -> str:
    return (ROOT / path).read_text()


def definitions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """Every class and function with its dotted name (Class.method, outer.inner)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from definitions(node, prefix=f"{name}.")
        else:
            yield from definitions(node, prefix=prefix)


def oversized_classes(text: str) -> list[tuple[str, int]]:
    return [
        (name, node.end_lineno - node.lineno + 1)
        for name, node in definitions(ast.parse(text))
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > CLASS_LINES_MAX
    ]


def same_typed_runs(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[list[str]]:
    """Runs of two or more positional parameters with one annotation (self and cls aside)."""
    parameters = function.args.posonlyargs + function.args.args
    if parameters and parameters[0].arg in ("self", "cls"):
        parameters = parameters[1:]
    runs: list[list[str]] = []
    run: list[str] = []
    previous: str | None = None
    for parameter in parameters:
        annotation = ast.unparse(parameter.annotation) if parameter.annotation else None
        if annotation is not None and annotation == previous:
            run.append(parameter.arg)
        else:
            runs.append(run)
            run = [parameter.arg]
        previous = annotation
    runs.append(run)
    return [run for run in runs if len(run) >= 2]


def positional_runs(text: str) -> dict[str, list[list[str]]]:
    """Each function of `text` taking such a run, by its dotted name."""
    found = {}
    for name, node in definitions(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and same_typed_runs(node):
            found[name] = same_typed_runs(node)
    return found


def unexplained_type_ignores(text: str) -> list[int]:
    """Lines whose `type: ignore` comment names no error code or gives no reason after it."""
    return [
        token.start[0]
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type == tokenize.COMMENT
        and _TYPE_IGNORE.search(token.string)
        and not _TYPE_IGNORE_EXPLAINED.search(token.string)
    ]


def application_positional_runs() -> dict[str, list[list[str]]]:
    return {
        f"{path.as_posix()}::{name}": runs
        for path in application_files()
        for name, runs in positional_runs(source(path)).items()
    }


# --- the tree keeps its shape ------------------------------------------------------------


def test_no_class_in_the_project_is_over_350_lines() -> None:
    oversized = [
        f"{path}: {name} ({lines} lines)"
        for path in python_files()
        for name, lines in oversized_classes(source(path))
    ]

    assert oversized == []


def test_no_function_of_the_application_or_bench_takes_a_run_of_same_typed_positionals() -> None:
    runs = application_positional_runs()
    offending = {name: run for name, run in runs.items() if name not in POSITIONAL_RUNS_ALLOWED}

    assert offending == {}, "make them keyword-only (`*,`), or list a framework's signature"


def test_every_allowed_positional_run_is_still_one() -> None:
    runs = application_positional_runs()

    assert sorted(POSITIONAL_RUNS_ALLOWED - set(runs)) == []


def test_every_type_ignore_names_its_error_code_and_says_why() -> None:
    unexplained = [
        f"{path}:{line}"
        for path in python_files()
        for line in unexplained_type_ignores(source(path))
    ]

    assert unexplained == [], "write `# type: ignore[code]  # why` (or type it)"


# --- the scans see what they look for ----------------------------------------------------


def test_the_class_scan_sees_a_class_one_line_over_the_limit() -> None:
    body = "    x = 1\n" * CLASS_LINES_MAX

    assert oversized_classes(f"class Big:\n{body}") == [("Big", CLASS_LINES_MAX + 1)]
    assert oversized_classes(f"class Fits:\n{body[10:]}") == []


def test_the_parameter_scan_sees_a_positional_run_and_spares_keyword_only_ones() -> None:
    text = (
        "def swap(a: int, b: int, c: str) -> None: ...\n"
        "class Store:\n"
        "    def void(self, tx: str, *, by: str, why: str) -> None: ...\n"
        "    def mixed(self, tx: str, by: int, why: str) -> None: ...\n"
    )

    assert positional_runs(text) == {"swap": [["a", "b"]]}


def test_the_type_ignore_scan_sees_a_missing_code_or_reason() -> None:
    text = (
        "a = 1  # type: ignore\n"
        "b = 2  # type: ignore[misc]\n"
        "c = 3  # type: ignore[misc]  # why it is fine\n"
        "d = 4  # type: ignore[arg-type, misc]  # why both are fine\n"
        "e = '# type: ignore in a string is no comment'\n"
    )

    assert unexplained_type_ignores(text) == [1, 2]
