//! The contract mutations as executor commands. Each answers the contract
//! as it now stands, whose `ETag` the stored outcome repeats on replay.

use uuid::Uuid;

use super::{
    ApproveContract, Contract, ContractError, CreateContract, RejectContract, Transition, UpdateContract,
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
command!(Cancel: "contract.cancel", status 200 => Contract, ContractError,
    |c, conn| super::transition(conn, c.tenant, c.contract_id, Some(c.version), Transition::CANCEL));
