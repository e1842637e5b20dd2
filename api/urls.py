from django.urls import path

from api import (
    batch_views,
    event_views,
    history_views,
    hold_views,
    monitor_views,
    statement_views,
    views,
)

WALLET = "clients/<str:client_id>/wallets/<str:country>/<str:currency>"

urlpatterns = [
    path("ping", views.PingView.as_view(), name="ping"),
    path("events", event_views.EventsView.as_view(), name="events"),
    path(
        "event-subscriptions",
        event_views.SubscriptionsView.as_view(),
        name="event-subscriptions",
    ),
    path(
        "event-subscriptions/<int:subscription_id>",
        event_views.SubscriptionView.as_view(),
        name="event-subscription",
    ),
    path(
        "event-subscriptions/<int:subscription_id>/replay",
        event_views.SubscriptionReplayView.as_view(),
        name="event-subscription-replay",
    ),
    path("balance-monitors", monitor_views.BalanceMonitorsView.as_view(), name="balance-monitors"),
    path(
        "balance-monitors/<int:monitor_id>",
        monitor_views.BalanceMonitorView.as_view(),
        name="balance-monitor",
    ),
    path("batches", batch_views.BatchesView.as_view(), name="batches"),
    path(
        "clients/<str:client_id>/wallets", views.ClientWalletsView.as_view(), name="client-wallets"
    ),
    path(WALLET, views.WalletBalanceView.as_view(), name="wallet-balance"),
    path(f"{WALLET}/credits", views.WalletCreditsView.as_view(), name="wallet-credits"),
    path(f"{WALLET}/debits", views.WalletDebitsView.as_view(), name="wallet-debits"),
    path(f"{WALLET}/history", history_views.WalletHistoryView.as_view(), name="wallet-history"),
    path(
        f"{WALLET}/statement",
        statement_views.WalletStatementView.as_view(),
        name="wallet-statement",
    ),
    path(f"{WALLET}/holds", hold_views.WalletHoldsView.as_view(), name="wallet-holds"),
    path("holds/<str:hold_id>", hold_views.HoldView.as_view(), name="hold"),
    path("holds/<str:hold_id>/capture", hold_views.HoldCaptureView.as_view(), name="hold-capture"),
    path("holds/<str:hold_id>/release", hold_views.HoldReleaseView.as_view(), name="hold-release"),
    path("transactions/<str:transaction_id>", views.TransactionView.as_view(), name="transaction"),
    path(
        "transactions/<str:transaction_id>/void",
        views.TransactionVoidView.as_view(),
        name="transaction-void",
    ),
]
