"""Who may call which API operation: Django model permissions, named on each view.

Fails closed: a view that names no `required_permissions` refuses every caller, so a new
endpoint cannot ship open by omission. Superusers hold every permission (Django's rule).
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

READ_WALLETS = "registry.read_wallets"
# A wallet's statement for a period (GET .../statement; the admin's statement page).
VIEW_STATEMENTS = "registry.view_statement"
CREDIT_WALLETS = "registry.credit_wallets"
DEBIT_WALLETS = "registry.debit_wallets"
VOID_TRANSACTIONS = "registry.void_wallettransfer"
# POST /api/batches; each item also needs its own kind's permission (credit_wallets,
# debit_wallets), so a batch never lets a caller do what it could not do one by one.
POST_BATCHES = "registry.post_batches"
# The role of the payment systems calling the API (read, credit, debit; data migration
# flags/0003_api_roles); `manage.py create_service_account` puts accounts in it.
SERVICE_ACCOUNT_GROUP = "Service account"


class HasRequiredPermissions(BasePermission):
    """The caller holds every permission the view lists in `required_permissions`
    (an empty tuple: authentication alone, as for /api/ping)."""

    message = "Your account lacks the permission this operation needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # DRF answers 401 not_authenticated
        required = getattr(view, "required_permissions", None)
        if required is None:
            return False
        return request.user.has_perms(required)
