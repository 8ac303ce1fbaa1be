//! The wallet mutations as executor commands: each names its audit action
//! and runs one use case in the executor's transaction.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    CreateWallet, CreditRequest, DebitRequest, Transfer, TransferRequest, Wallet, WalletError,
    WalletTransaction,
};
use crate::{
    executor::{Command, Run},
    idempotency::IdempotencyKey,
    tenants::Tenant,
};

pub struct Create(pub Tenant, pub CreateWallet);
pub struct Credit(pub Tenant, pub Uuid, pub CreditRequest);
pub struct Debit(pub Tenant, pub Uuid, pub DebitRequest);
pub struct MakeTransfer(pub Tenant, pub TransferRequest);

impl Command for Create {
    const ACTION: &'static str = "wallet.create";
    type Output = Wallet;
    type Error = WalletError;
    async fn run(self, conn: &mut PgConnection, _: &IdempotencyKey) -> Result<Run<Wallet>, WalletError> {
        super::create(conn, self.0, self.1).await.map(Run::New)
    }
}

impl Command for Credit {
    const ACTION: &'static str = "wallet.credit";
    type Output = WalletTransaction;
    type Error = WalletError;
    async fn run(
        self,
        conn: &mut PgConnection,
        key: &IdempotencyKey,
    ) -> Result<Run<WalletTransaction>, WalletError> {
        super::credit(conn, self.0, self.1, self.2, key.as_str()).await
    }
}

impl Command for Debit {
    const ACTION: &'static str = "wallet.debit";
    type Output = WalletTransaction;
    type Error = WalletError;
    async fn run(
        self,
        conn: &mut PgConnection,
        key: &IdempotencyKey,
    ) -> Result<Run<WalletTransaction>, WalletError> {
        super::debit(conn, self.0, self.1, self.2, key.as_str()).await
    }
}

impl Command for MakeTransfer {
    const ACTION: &'static str = "wallet.transfer";
    type Output = Transfer;
    type Error = WalletError;
    async fn run(self, conn: &mut PgConnection, key: &IdempotencyKey) -> Result<Run<Transfer>, WalletError> {
        super::transfer(conn, self.0, self.1, key.as_str()).await
    }
}
