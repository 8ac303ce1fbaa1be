//! The invoice mutations as executor commands.

use uuid::Uuid;

use super::{CreateInvoice, Invoice, InvoiceError, PayInvoice, PaymentReceipt, UpdateInvoice};
use crate::{
    executor::{Command, Run, Unit},
    tenants::Tenant,
};

pub struct Create(pub Tenant, pub CreateInvoice);
pub struct Update(pub Tenant, pub Uuid, pub UpdateInvoice);
pub struct Finalize(pub Tenant, pub Uuid);
pub struct Pay(pub Tenant, pub Uuid, pub PayInvoice);
pub struct Void(pub Tenant, pub Uuid);

impl Command for Create {
    const ACTION: &'static str = "invoice.create";
    type Output = Invoice;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Invoice>, InvoiceError> {
        super::create(unit.conn(), self.0, Uuid::now_v7(), self.1)
            .await
            .map(Run::New)
    }
}

impl Command for Update {
    const ACTION: &'static str = "invoice.update";
    const STATUS: u16 = 200;
    type Output = Invoice;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Invoice>, InvoiceError> {
        super::update(unit.conn(), self.0, self.1, self.2)
            .await
            .map(Run::New)
    }
}

impl Command for Finalize {
    const ACTION: &'static str = "invoice.finalize";
    const STATUS: u16 = 200;
    type Output = Invoice;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Invoice>, InvoiceError> {
        let key = unit.key();
        super::finalize(unit.conn(), self.0, self.1, Some(key)).await
    }
}

impl Command for Pay {
    const ACTION: &'static str = "invoice.pay";
    type Output = PaymentReceipt;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<PaymentReceipt>, InvoiceError> {
        let key = unit.key();
        super::pay(unit.conn(), self.0, self.1, self.2, key).await
    }
}

impl Command for Void {
    const ACTION: &'static str = "invoice.void";
    const STATUS: u16 = 200;
    type Output = Invoice;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Invoice>, InvoiceError> {
        super::void(unit.conn(), self.0, self.1).await.map(Run::New)
    }
}
