//! The invoice mutations as executor commands.

use uuid::Uuid;

use super::{CreateInvoice, Invoice, InvoiceError, PayInvoice, PaymentReceipt, UpdateInvoice};
use crate::{
    executor::{Claimed, Command, Ran, Unit},
    tenants::Tenant,
};

pub struct Create {
    pub tenant: Tenant,
    pub input: CreateInvoice,
}

pub struct Update {
    pub tenant: Tenant,
    pub invoice_id: Uuid,
    pub input: UpdateInvoice,
}

pub struct Finalize {
    pub tenant: Tenant,
    pub invoice_id: Uuid,
}

pub struct Pay {
    pub tenant: Tenant,
    pub invoice_id: Uuid,
    pub input: PayInvoice,
}

pub struct Void {
    pub tenant: Tenant,
    pub invoice_id: Uuid,
}

impl Command for Create {
    const ACTION: &'static str = "invoice.create";
    type Key = Claimed;
    type Output = Invoice;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Invoice>, InvoiceError> {
        let invoice = super::create(unit.conn(), self.tenant, Uuid::now_v7(), self.input).await?;
        Ok(key.answer(invoice))
    }
}

impl Command for Update {
    const ACTION: &'static str = "invoice.update";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = Invoice;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Invoice>, InvoiceError> {
        let invoice = super::update(unit.conn(), self.tenant, self.invoice_id, self.input).await?;
        Ok(key.answer(invoice))
    }
}

impl Command for Finalize {
    const ACTION: &'static str = "invoice.finalize";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = Invoice;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Invoice>, InvoiceError> {
        let request_key = unit.key();
        let run = super::finalize(unit.conn(), self.tenant, self.invoice_id, Some(request_key)).await?;
        Ok(key.ran(run))
    }
}

impl Command for Pay {
    const ACTION: &'static str = "invoice.pay";
    type Key = Claimed;
    type Output = PaymentReceipt;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<PaymentReceipt>, InvoiceError> {
        let (key, run) = super::pay(unit, key, self.tenant, self.invoice_id, self.input).await?;
        Ok(key.ran(run))
    }
}

impl Command for Void {
    const ACTION: &'static str = "invoice.void";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = Invoice;
    type Error = InvoiceError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<Invoice>, InvoiceError> {
        let invoice = super::void(unit.conn(), self.tenant, self.invoice_id).await?;
        Ok(key.answer(invoice))
    }
}
