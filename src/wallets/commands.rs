//! The wallet mutations as executor commands: each names its audit action
//! and runs one use case in the executor's transaction.

use uuid::Uuid;

use super::{
    CreateWallet, CreditRequest, DebitRequest, Transfer, TransferRequest, Wallet, WalletError,
    WalletTransaction,
};
use crate::{
    executor::{Claimed, Command, Ran, Unclaimed, Unit},
    tenants::Tenant,
};

pub struct Create {
    pub tenant: Tenant,
    pub input: CreateWallet,
}

pub struct Credit {
    pub tenant: Tenant,
    pub wallet_id: Uuid,
    pub input: CreditRequest,
}

pub struct Debit {
    pub tenant: Tenant,
    pub wallet_id: Uuid,
    pub input: DebitRequest,
}

pub struct MakeTransfer {
    pub tenant: Tenant,
    pub input: TransferRequest,
}

impl Command for Create {
    const ACTION: &'static str = "wallet.create";
    type Key = Claimed;
    type Output = Wallet;
    type Error = WalletError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Wallet>, WalletError> {
        let wallet = super::create(unit.conn(), self.tenant, self.input).await?;
        Ok(key.answer(wallet))
    }
}

impl Command for Credit {
    const ACTION: &'static str = "wallet.credit";
    type Key = Unclaimed;
    type Output = WalletTransaction;
    type Error = WalletError;
    async fn run(self, unit: &mut Unit<'_>, key: Unclaimed) -> Result<Ran<WalletTransaction>, WalletError> {
        super::credit(unit, key, self.tenant, self.wallet_id, self.input).await
    }
}

impl Command for Debit {
    const ACTION: &'static str = "wallet.debit";
    type Key = Unclaimed;
    type Output = WalletTransaction;
    type Error = WalletError;
    async fn run(self, unit: &mut Unit<'_>, key: Unclaimed) -> Result<Ran<WalletTransaction>, WalletError> {
        super::debit(unit, key, self.tenant, self.wallet_id, self.input).await
    }
}

impl Command for MakeTransfer {
    const ACTION: &'static str = "wallet.transfer";
    type Key = Unclaimed;
    type Output = Transfer;
    type Error = WalletError;
    async fn run(self, unit: &mut Unit<'_>, key: Unclaimed) -> Result<Ran<Transfer>, WalletError> {
        super::transfer(unit, key, self.tenant, self.input).await
    }
}
