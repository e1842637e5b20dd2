"""The TigerBeetle store's event outbox writes (`StoreMovement`): the only module that adds a
row. Each is called inside the transaction that writes the movement's registry row, and a
repeat of the same movement (a retried request, a concurrent one) is left as it is."""

from __future__ import annotations

from datetime import datetime

from registry.models import StoreMovement


def record_movement(
    *,
    movement: str,
    reference_id: str,
    wallet_pk: int,
    amount_minor: int,
    occurred_at: datetime,
    actor: str,
    transaction_kind: str = "",
    tb_transfer_id_hex: str = "",
) -> None:
    assert movement in StoreMovement.Movement.values, movement
    assert amount_minor > 0, "a movement moves a positive amount"
    StoreMovement.objects.bulk_create(
        [
            StoreMovement(
                movement=movement,
                reference_id=reference_id,
                transaction_kind=transaction_kind,
                wallet_id=wallet_pk,
                amount_minor=amount_minor,
                tb_transfer_id_hex=tb_transfer_id_hex,
                actor=actor,
                occurred_at=occurred_at,
            )
        ],
        ignore_conflicts=True,
    )


def record_movements(rows: list[StoreMovement]) -> None:
    """Many at once (a batch's), each repeat left as it is."""
    for row in rows:
        assert row.amount_minor > 0 and row.movement in StoreMovement.Movement.values
    StoreMovement.objects.bulk_create(rows, ignore_conflicts=True)
