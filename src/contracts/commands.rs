//! The contract mutations as executor commands. Each answers the contract
//! as it now stands, whose `ETag` the stored outcome repeats on replay.

use std::time::Duration;

use chrono::NaiveDate;
use uuid::Uuid;

use super::{
    ApproveContract, CancelContract, Contract, ContractError, ContractPeriod, CreateContract, RejectContract,
    Transition, UpdateContract,
};
use crate::{executor::command, tenants::Tenant};

pub struct Create {
    pub tenant: Tenant,
    pub input: CreateContract,
}

pub struct Update {
    pub tenant: Tenant,
    pub contract_id: Uuid,
    /// The version `If-Match` named.
    pub version: i64,
    pub input: UpdateContract,
}

pub struct Submit {
    pub tenant: Tenant,
    pub contract_id: Uuid,
    /// `If-Match` is optional on submit.
    pub version: Option<i64>,
}

pub struct Approve {
    pub tenant: Tenant,
    pub contract_id: Uuid,
    pub version: i64,
    pub input: ApproveContract,
}

pub struct Reject {
    pub tenant: Tenant,
    pub contract_id: Uuid,
    pub version: i64,
    pub input: RejectContract,
}

pub struct Cancel {
    pub tenant: Tenant,
    pub contract_id: Uuid,
    pub version: i64,
    pub input: CancelContract,
}

/// The billing job's: bill one period (docs/recurring-billing.md).
pub struct BillPeriod {
    pub tenant: Tenant,
    pub contract_id: Uuid,
    pub period_start: NaiveDate,
    pub dunning: Vec<Duration>,
}

/// The billing job's: one dunning attempt of a period's payment.
pub struct RetryPayment {
    pub tenant: Tenant,
    pub contract_id: Uuid,
    pub period_start: NaiveDate,
    pub dunning: Vec<Duration>,
}

command!(Create: "contract.create" => Contract, ContractError,
    |c, conn| super::create(conn, c.tenant, c.input));
command!(Update: "contract.update", status 200 => Contract, ContractError,
    |c, conn| super::update(conn, c.tenant, c.contract_id, c.version, c.input));
command!(Submit: "contract.submit", status 200 => Contract, ContractError,
    |c, conn| super::transition(conn, c.tenant, c.contract_id, c.version, Transition::SUBMIT));
command!(Approve: "contract.approve", status 200 => Contract, ContractError,
|c, conn| {
    let t = Transition::approve(c.input.note.as_deref());
    super::transition(conn, c.tenant, c.contract_id, Some(c.version), t)
});
command!(Reject: "contract.reject", status 200 => Contract, ContractError,
|c, conn| {
    let t = Transition::reject(&c.input.reason);
    super::transition(conn, c.tenant, c.contract_id, Some(c.version), t)
});
command!(Cancel: "contract.cancel", status 200 => keyed Contract, ContractError,
    |c, unit, key| super::billing::cancel(unit, key, c.tenant, c.contract_id, c.version, c.input));
command!(BillPeriod: "contract.bill_period" => keyed ContractPeriod, ContractError,
    |c, unit, key| super::billing::bill_period(unit, key, c.tenant, c.contract_id, c.period_start, &c.dunning));
command!(RetryPayment: "contract.retry_payment", status 200 => keyed ContractPeriod, ContractError,
    |c, unit, key| super::billing::retry_payment(unit, key, c.tenant, c.contract_id, c.period_start, &c.dunning));
