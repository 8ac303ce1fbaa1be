//! The wallet mutations as executor commands: each names its audit action
//! and runs one use case in the executor's transaction. Movements take the
//! lean shape: the wallet's lock claims the key.

use uuid::Uuid;

use super::{
    CreateWallet, CreditRequest, DebitRequest, MovementRefund, RefundRequest, Transfer, TransferRequest,
    Wallet, WalletError, WalletTransaction,
};
use crate::{executor::command, tenants::Tenant};

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

command!(Create: "wallet.create" => Wallet, WalletError,
    |c, conn| super::create(conn, c.tenant, c.input));
command!(Credit: "wallet.credit" => lean WalletTransaction, WalletError,
    |c, unit, key| super::credit(unit, key, c.tenant, c.wallet_id, c.input));
command!(Debit: "wallet.debit" => lean WalletTransaction, WalletError,
    |c, unit, key| super::debit(unit, key, c.tenant, c.wallet_id, c.input));
command!(MakeTransfer: "wallet.transfer" => lean Transfer, WalletError,
    |c, unit, key| super::transfer(unit, key, c.tenant, c.input));

pub struct Refund {
    pub tenant: Tenant,
    pub wallet_id: Uuid,
    pub transaction_id: Uuid,
    pub input: RefundRequest,
}

command!(Refund: "wallet.refund" => lean MovementRefund, WalletError,
    |c, unit, key| super::refund(unit, key, c.tenant, c.wallet_id, c.transaction_id, c.input));
