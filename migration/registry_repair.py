"""Support's repairs of the transfer registry from what TigerBeetle holds.

TigerBeetle's transfers are immutable and are the ledger: where the registry and TigerBeetle
differ (`migration.transfer_check`), the registry is brought to what TigerBeetle holds, never
the other way round. Each repair reads TigerBeetle again at the moment it is made (a finding
may be hours old), refuses with the reason when the case no longer stands as found, writes
through `registry.transfers` (the one module that writes transfer rows), resolves the case
and records the action (`BlockerAction`) in one database transaction:

- register a transfer TigerBeetle holds that no row names: the person gives the transaction
  id (the page offers the one MongoDB's log of the wallet derives it from); it must derive
  the transfer's id, so no transfer is ever registered under another transaction's name. A
  void no row names registers its voided transaction, as voided;
- mark voided a registered transaction whose void TigerBeetle holds;
- correct a registered amount to the amount TigerBeetle holds for the transfer.

A registered transfer that TigerBeetle lacks has no repair here: registering the money
TigerBeetle does not hold would be inventing it (docs/migration.md says what to do).

What MongoDB lacks of a repaired row is flagged to be copied back (the outbox sweeper copies
it outside phase 4, a step back from phase 4 copies it), exactly as for a write TigerBeetle
took alone; what MongoDB holds already is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from tigerbeetle import Transfer

from domain import errors
from domain.ids import hex_to_u128, u128_to_hex
from domain.wallets import TransactionRecord, time_of_tb_timestamp
from ledger.batches import LedgerBatches
from ledger.service import checked_id
from ledger.stores.mongo_store import MongoWalletStore
from ledger.tb_model import TRANSFER_CODE_CREDIT, TRANSFER_CODE_DEBIT, TRANSFER_CODE_VOID
from migration.models import BlockerAction, ReconciliationMismatch
from migration.outbox import MirrorOutbox
from registry import transfers as transfer_registry
from registry.models import WalletAccount, WalletTransfer

Kind = ReconciliationMismatch.Kind
# Logged transactions of a wallet hashed to find the one a transfer was posted for.
SUGGEST_ENTRIES_MAX = 20_000


class RepairRefused(Exception):
    """The repair was not made; the message says why, in support's words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Repair:
    """What a repair needs: the stores it reads and who makes it."""

    tigerbeetle: LedgerBatches
    mongo: MongoWalletStore
    actor: str

    # --- the three repairs ----------------------------------------------------------------

    def register(self, mismatch: ReconciliationMismatch, *, transaction_id: str) -> str:
        """Register the transfer (or the voided transaction of the void) TigerBeetle holds."""
        _expect(mismatch, Kind.NOT_REGISTERED)
        transfer = self._transfer(mismatch.tb_transfer_id_hex)
        wallet = _wallet(mismatch)
        try:
            transaction_id = checked_id(transaction_id, field="transaction id")
        except errors.WalletError as exc:
            raise RepairRefused(exc.message) from exc
        if transfer.code == TRANSFER_CODE_VOID:
            new, void_id, in_mongo, voided_in_mongo = self._voided_transaction(
                transfer, wallet, transaction_id=transaction_id
            )
        elif transfer.code in (TRANSFER_CODE_CREDIT, TRANSFER_CODE_DEBIT):
            new, in_mongo = self._posted_transaction(
                transfer, wallet, transaction_id=transaction_id
            )
            void_id, voided_in_mongo = None, False
        else:
            raise RepairRefused(f"TigerBeetle's transfer has code {transfer.code}: not a wallet's.")
        try:
            with transaction.atomic():
                transfer_registry.register_from_ledger(
                    new,
                    void_tb_transfer_id=void_id,
                    needs_copy_back=not in_mongo,
                    void_needs_copy_back=void_id is not None and not voided_in_mongo,
                )
                message = (
                    f"Registered {new.kind} {transaction_id} of wallet {wallet.key.describe()} "
                    f"as TigerBeetle holds it ({new.state})"
                    + ("." if in_mongo else "; MongoDB lacks it: it will be copied back.")
                )
                self._done(mismatch, action=BlockerAction.Action.REGISTER_TRANSFER, message=message)
        except IntegrityError as exc:
            raise RepairRefused(f"{transaction_id} is registered already.") from exc
        return message

    def mark_voided(self, mismatch: ReconciliationMismatch) -> str:
        """The registered transaction is voided, as TigerBeetle's void says."""
        _expect(mismatch, Kind.VOID_NOT_MARKED)
        void = self._transfer(mismatch.tb_transfer_id_hex)
        row = (
            WalletTransfer.objects.select_related("wallet")
            .filter(tb_transfer_id_hex=u128_to_hex(void.user_data_128))
            .first()
        )
        if void.code != TRANSFER_CODE_VOID or row is None:
            raise RepairRefused("TigerBeetle's transfer is not the void of a registered transfer.")
        if row.state != WalletTransfer.State.POSTED:
            raise RepairRefused(f"{row.transaction_id} is {row.state} already.")
        takes_back = void.debit_account_id if row.kind == "credit" else void.credit_account_id
        if takes_back != row.wallet.tb_account_id or void.amount != row.amount_minor:
            raise RepairRefused(
                "The void does not take back exactly this transaction on its wallet: the "
                "registry is not changed; see docs/migration.md."
            )
        record = self._mongo_record(row.transaction_id)
        voided_in_mongo = record is not None and record.state == "voided"
        in_mongo = record is not None or row.needs_copy_back
        with transaction.atomic():
            transfer_registry.mark_voided(
                row,
                void_tb_transfer_id=void.id,
                voided_by=record.voided_by if voided_in_mongo and record else self.actor,
                void_reason=(record.void_reason if voided_in_mongo and record else "")
                or f"voided in TigerBeetle; registered by {self.actor}'s repair",
                voided_at=time_of_tb_timestamp(void.timestamp),
                needs_copy_back=in_mongo and not voided_in_mongo,
            )
            message = f"Marked {row.transaction_id} voided, as TigerBeetle's void says." + (
                "" if voided_in_mongo else " MongoDB has it posted: the void will be copied back."
            )
            self._done(mismatch, action=BlockerAction.Action.MARK_VOIDED, message=message)
        return message

    def correct_amount(self, mismatch: ReconciliationMismatch) -> str:
        """The registered amount set to what TigerBeetle holds for the transfer."""
        _expect(mismatch, Kind.TRANSFER_DIFFERS)
        row = (
            WalletTransfer.objects.select_related("wallet")
            .filter(transaction_id=mismatch.transaction_id)
            .first()
        )
        if row is None or row.tb_transfer_id_hex != mismatch.tb_transfer_id_hex:
            raise RepairRefused(
                "Only a transaction's own transfer is corrected, not its void: see "
                "docs/migration.md for a void that differs."
            )
        transfer = self._transfer(mismatch.tb_transfer_id_hex)
        code = TRANSFER_CODE_CREDIT if row.kind == "credit" else TRANSFER_CODE_DEBIT
        side = transfer.credit_account_id if row.kind == "credit" else transfer.debit_account_id
        if transfer.code != code or side != row.wallet.tb_account_id:
            raise RepairRefused(
                "TigerBeetle holds this id as another kind or on another wallet, not only "
                "with another amount: the registry is not changed; see docs/migration.md."
            )
        if row.state != WalletTransfer.State.POSTED:
            raise RepairRefused(f"{row.transaction_id} is {row.state}: its amount is not changed.")
        if transfer.amount == row.amount_minor:
            raise RepairRefused("The amounts agree now: nothing to correct.")
        before = row.amount_minor
        with transaction.atomic():
            transfer_registry.correct_amount(row, amount_minor=int(transfer.amount))
            message = (
                f"Corrected the registered amount of {row.transaction_id} from {before} to "
                f"{transfer.amount} (minor units), as TigerBeetle holds it."
            )
            self._done(mismatch, action=BlockerAction.Action.CORRECT_AMOUNT, message=message)
        return message

    # --- what the repair page offers ------------------------------------------------------

    def suggested_transaction_id(self, mismatch: ReconciliationMismatch) -> str:
        """The transaction of the wallet's MongoDB log whose id derives the transfer's (for
        a void: the voided transfer's); "" when none does or MongoDB does not answer."""
        if mismatch.kind != Kind.NOT_REGISTERED or not mismatch.client_id:
            return ""
        try:
            transfer = self._transfer(mismatch.tb_transfer_id_hex)
            wanted = transfer.user_data_128 if transfer.code == TRANSFER_CODE_VOID else transfer.id
            candidates = MirrorOutbox(self.mongo.database).logged_transaction_ids(
                _wallet(mismatch).key, limit=SUGGEST_ENTRIES_MAX, tb_timestamp=transfer.timestamp
            )
        except (RepairRefused, errors.StoreUnavailable):
            return ""
        ids = self.tigerbeetle.scope.ids
        return next((c for c in candidates if ids.transaction_transfer_id(c) == wanted), "")

    # --- parts ----------------------------------------------------------------------------

    def _transfer(self, tb_transfer_id_hex: str) -> Transfer:
        found = self.tigerbeetle.lookup_transfers([hex_to_u128(tb_transfer_id_hex)])
        if not found:
            raise RepairRefused(f"TigerBeetle does not hold transfer {tb_transfer_id_hex}.")
        return found[0]

    def _mongo_record(self, transaction_id: str) -> TransactionRecord | None:
        try:
            return self.mongo.get_transaction(transaction_id)
        except errors.TransactionNotFound:
            return None
        except errors.StoreUnavailable as exc:
            raise RepairRefused(
                f"MongoDB did not answer ({exc.message}); nothing was changed, try again."
            ) from exc

    def _posted_transaction(
        self, transfer: Transfer, wallet: WalletAccount, *, transaction_id: str
    ) -> tuple[transfer_registry.NewTransfer, bool]:
        kind = "credit" if transfer.code == TRANSFER_CODE_CREDIT else "debit"
        side = transfer.credit_account_id if kind == "credit" else transfer.debit_account_id
        if side != wallet.tb_account_id:
            raise RepairRefused(f"TigerBeetle's {kind} is not on wallet {wallet.key.describe()}.")
        self._derives(transaction_id, transfer.id)
        record = self._mongo_record(transaction_id)
        _same_in_mongo(record, kind=kind, amount_minor=transfer.amount, wallet=wallet)
        new = transfer_registry.NewTransfer(
            transaction_id=transaction_id,
            wallet=wallet,
            kind=kind,
            amount_minor=int(transfer.amount),
            tb_transfer_id=transfer.id,
            tb_timestamp=transfer.timestamp,
            created_at=time_of_tb_timestamp(transfer.timestamp),
            made_by=record.made_by if record else "",
        )
        return new, record is not None

    def _voided_transaction(
        self, void: Transfer, wallet: WalletAccount, *, transaction_id: str
    ) -> tuple[transfer_registry.NewTransfer, int, bool, bool]:
        """The voided transaction of a void no row names, registered as voided."""
        kind = "credit" if void.debit_account_id == wallet.tb_account_id else "debit"
        self._derives(transaction_id, void.user_data_128)
        record = self._mongo_record(transaction_id)
        _same_in_mongo(record, kind=kind, amount_minor=void.amount, wallet=wallet)
        originals = self.tigerbeetle.lookup_transfers([void.user_data_128])
        original = originals[0] if originals else None
        if original is None and record is None:
            raise RepairRefused(
                "Neither TigerBeetle nor MongoDB holds the voided transaction: the registry "
                "is not changed; see docs/migration.md."
            )
        voided_in_mongo = record is not None and record.state == "voided"
        reason = record.void_reason if voided_in_mongo and record else ""
        new = transfer_registry.NewTransfer(
            transaction_id=transaction_id,
            wallet=wallet,
            kind=kind,
            amount_minor=int(void.amount),
            tb_transfer_id=void.user_data_128,
            tb_timestamp=original.timestamp if original else None,
            created_at=record.created_at
            if record
            else time_of_tb_timestamp(original.timestamp if original else void.timestamp),
            made_by=record.made_by if record else "",
            state=WalletTransfer.State.VOIDED,
            voided_by=(record.voided_by if voided_in_mongo and record else "") or self.actor,
            void_reason=reason or f"voided in TigerBeetle; registered by {self.actor}'s repair",
            voided_at=time_of_tb_timestamp(void.timestamp),
        )
        return new, void.id, record is not None, voided_in_mongo

    def _derives(self, transaction_id: str, tb_transfer_id: int) -> None:
        if self.tigerbeetle.scope.ids.transaction_transfer_id(transaction_id) != tb_transfer_id:
            raise RepairRefused(
                f"{transaction_id!r} is not the transaction of TigerBeetle's transfer (its id "
                "does not derive the transfer's): check the id in MongoDB's log or with the "
                "client."
            )

    def _done(self, mismatch: ReconciliationMismatch, *, action: str, message: str) -> None:
        """The case (and any open twin of it from earlier runs) resolved, the action kept."""
        ReconciliationMismatch.objects.filter(
            kind=mismatch.kind,
            tb_transfer_id_hex=mismatch.tb_transfer_id_hex,
            resolved_at__isnull=True,
        ).update(resolved_at=timezone.now(), resolved_by=f"{self.actor} (repair)")
        BlockerAction.objects.create(
            actor=self.actor,
            action=action,
            mismatch=mismatch,
            outcome=message[:500],
            client_id=mismatch.client_id,
            country=mismatch.country,
            currency=mismatch.currency,
            issuer=mismatch.issuer,
        )


def _expect(mismatch: ReconciliationMismatch, kind: str) -> None:
    if mismatch.kind != kind:
        raise RepairRefused(f"This repair is not for a {mismatch.get_kind_display()} case.")
    if mismatch.resolved_at is not None:
        raise RepairRefused(f"This case was resolved by {mismatch.resolved_by} already.")


def _wallet(mismatch: ReconciliationMismatch) -> WalletAccount:
    wallet = WalletAccount.objects.filter(tb_account_id_hex=mismatch.tb_account_id_hex).first()
    if wallet is None:
        raise RepairRefused("The wallet's account has no registry row: see its own case first.")
    return wallet


def _same_in_mongo(
    record: TransactionRecord | None, *, kind: str, amount_minor: int, wallet: WalletAccount
) -> None:
    """A transaction MongoDB holds under this id must be the same one."""
    if record is None:
        return
    if (str(record.kind), record.amount_minor, record.key) != (kind, amount_minor, wallet.key):
        raise RepairRefused(
            f"MongoDB holds {record.transaction_id} as a {record.kind} of {record.amount_minor} "
            f"on {record.key.describe()}, not as TigerBeetle's {kind} of {amount_minor} on "
            f"{wallet.key.describe()}: the registry is not changed; see docs/migration.md."
        )
