//! The contract mutations as executor commands. Each answers the contract
//! as it now stands, whose `ETag` the stored outcome repeats on replay.

use uuid::Uuid;

use super::{
    ApproveContract, Contract, ContractError, ContractStatus, CreateContract, RejectContract, Transition,
    UpdateContract,
};
use crate::{
    executor::{Command, Run, Unit},
    tenants::Tenant,
};

pub struct Create(pub Tenant, pub CreateContract);
/// The contract, the version `If-Match` named, the changes.
pub struct Update(pub Tenant, pub Uuid, pub i64, pub UpdateContract);
/// `If-Match` is optional on submit.
pub struct Submit(pub Tenant, pub Uuid, pub Option<i64>);
pub struct Approve(pub Tenant, pub Uuid, pub i64, pub ApproveContract);
pub struct Reject(pub Tenant, pub Uuid, pub i64, pub RejectContract);
pub struct Cancel(pub Tenant, pub Uuid, pub i64);

impl Command for Create {
    const ACTION: &'static str = "contract.create";
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Contract>, ContractError> {
        super::create(unit.conn(), self.0, self.1).await.map(Run::New)
    }
}

impl Command for Update {
    const ACTION: &'static str = "contract.update";
    const STATUS: u16 = 200;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Contract>, ContractError> {
        let Update(tenant, id, version, changes) = self;
        super::update(unit.conn(), tenant, id, version, changes)
            .await
            .map(Run::New)
    }
}

impl Command for Submit {
    const ACTION: &'static str = "contract.submit";
    const STATUS: u16 = 200;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Contract>, ContractError> {
        super::transition(unit.conn(), self.0, self.1, self.2, Transition::SUBMIT)
            .await
            .map(Run::New)
    }
}

impl Command for Approve {
    const ACTION: &'static str = "contract.approve";
    const STATUS: u16 = 200;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Contract>, ContractError> {
        let Approve(tenant, id, version, input) = self;
        let t = Transition {
            to: ContractStatus::Approved,
            from: &[ContractStatus::PendingApproval],
            note: input.note.as_deref(),
            reason: None,
        };
        super::transition(unit.conn(), tenant, id, Some(version), t)
            .await
            .map(Run::New)
    }
}

impl Command for Reject {
    const ACTION: &'static str = "contract.reject";
    const STATUS: u16 = 200;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Contract>, ContractError> {
        let Reject(tenant, id, version, input) = self;
        let t = Transition {
            to: ContractStatus::Rejected,
            from: &[ContractStatus::PendingApproval],
            note: None,
            reason: Some(&input.reason),
        };
        super::transition(unit.conn(), tenant, id, Some(version), t)
            .await
            .map(Run::New)
    }
}

impl Command for Cancel {
    const ACTION: &'static str = "contract.cancel";
    const STATUS: u16 = 200;
    type Output = Contract;
    type Error = ContractError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Contract>, ContractError> {
        super::transition(unit.conn(), self.0, self.1, Some(self.2), Transition::CANCEL)
            .await
            .map(Run::New)
    }
}
