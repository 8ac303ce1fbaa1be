//! The contract mutations as executor commands. Each answers the contract
//! as it now stands, whose `ETag` the stored outcome repeats on replay.

use uuid::Uuid;

use super::{
    ApproveContract, Contract, ContractError, CreateContract, RejectContract, Transition, UpdateContract,
};
use crate::{
    executor::{Claimed, Command, Ran, Unit},
    tenants::Tenant,
};

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

impl Command for Create {
    const ACTION: &'static str = "contract.create";
    type Key = Claimed;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Contract>, ContractError> {
        let contract = super::create(unit.conn(), self.tenant, self.input).await?;
        Ok(key.answer(contract))
    }
}

impl Command for Update {
    const ACTION: &'static str = "contract.update";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Contract>, ContractError> {
        let contract = super::update(
            unit.conn(),
            self.tenant,
            self.contract_id,
            self.version,
            self.input,
        )
        .await?;
        Ok(key.answer(contract))
    }
}

impl Command for Submit {
    const ACTION: &'static str = "contract.submit";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Contract>, ContractError> {
        let contract = super::transition(
            unit.conn(),
            self.tenant,
            self.contract_id,
            self.version,
            Transition::SUBMIT,
        )
        .await?;
        Ok(key.answer(contract))
    }
}

impl Command for Approve {
    const ACTION: &'static str = "contract.approve";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Contract>, ContractError> {
        let t = Transition::approve(self.input.note.as_deref());
        let contract =
            super::transition(unit.conn(), self.tenant, self.contract_id, Some(self.version), t).await?;
        Ok(key.answer(contract))
    }
}

impl Command for Reject {
    const ACTION: &'static str = "contract.reject";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Contract>, ContractError> {
        let t = Transition::reject(&self.input.reason);
        let contract =
            super::transition(unit.conn(), self.tenant, self.contract_id, Some(self.version), t).await?;
        Ok(key.answer(contract))
    }
}

impl Command for Cancel {
    const ACTION: &'static str = "contract.cancel";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Contract>, ContractError> {
        let contract = super::transition(
            unit.conn(),
            self.tenant,
            self.contract_id,
            Some(self.version),
            Transition::CANCEL,
        )
        .await?;
        Ok(key.answer(contract))
    }
}
