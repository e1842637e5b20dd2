from django.urls import path

from api import batch_views, views

WALLET = "clients/<str:client_id>/wallets/<str:country>/<str:currency>"

urlpatterns = [
    path("ping", views.PingView.as_view(), name="ping"),
    path("batches", batch_views.BatchesView.as_view(), name="batches"),
    path(
        "clients/<str:client_id>/wallets", views.ClientWalletsView.as_view(), name="client-wallets"
    ),
    path(WALLET, views.WalletBalanceView.as_view(), name="wallet-balance"),
    path(f"{WALLET}/credits", views.WalletCreditsView.as_view(), name="wallet-credits"),
    path(f"{WALLET}/debits", views.WalletDebitsView.as_view(), name="wallet-debits"),
    path("transactions/<str:transaction_id>", views.TransactionView.as_view(), name="transaction"),
    path(
        "transactions/<str:transaction_id>/void",
        views.TransactionVoidView.as_view(),
        name="transaction-void",
    ),
]
