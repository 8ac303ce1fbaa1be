//! The wallet mutations as executor commands: each names its audit action
//! and runs one use case in the executor's transaction.

use uuid::Uuid;

use super::{
    CreateWallet, CreditRequest, DebitRequest, Transfer, TransferRequest, Wallet, WalletError,
    WalletTransaction,
};
use crate::{
    executor::{Command, Run, Unit},
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
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Wallet>, WalletError> {
        super::create(unit.conn(), self.0, self.1).await.map(Run::New)
    }
}

impl Command for Credit {
    const ACTION: &'static str = "wallet.credit";
    const CLAIMS: bool = true;
    type Output = WalletTransaction;
    type Error = WalletError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<WalletTransaction>, WalletError> {
        super::credit(unit, self.0, self.1, self.2).await
    }
}

impl Command for Debit {
    const ACTION: &'static str = "wallet.debit";
    const CLAIMS: bool = true;
    type Output = WalletTransaction;
    type Error = WalletError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<WalletTransaction>, WalletError> {
        super::debit(unit, self.0, self.1, self.2).await
    }
}

impl Command for MakeTransfer {
    const ACTION: &'static str = "wallet.transfer";
    const CLAIMS: bool = true;
    type Output = Transfer;
    type Error = WalletError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Transfer>, WalletError> {
        super::transfer(unit, self.0, self.1).await
    }
}
