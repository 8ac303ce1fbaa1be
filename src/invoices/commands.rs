//! The invoice mutations as executor commands.

use uuid::Uuid;

use super::{
    CreateCreditNote, CreateInvoice, CreditNote, Invoice, InvoiceError, PayInvoice, PaymentReceipt,
    RefundPayment, RefundReceipt, UpdateInvoice,
};
use crate::{
    executor::{Claimed, Command, Ran, Unit, command},
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

command!(Create: "invoice.create" => Invoice, InvoiceError,
    |c, conn| super::create(conn, c.tenant, Uuid::now_v7(), c.input));

command!(Update: "invoice.update", status 200 => Invoice, InvoiceError,
    |c, conn| super::update(conn, c.tenant, c.invoice_id, c.input));

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

command!(Pay: "invoice.pay" => keyed PaymentReceipt, InvoiceError,
    |c, unit, key| super::pay(unit, key, c.tenant, c.invoice_id, c.input));

command!(Void: "invoice.void", status 200 => Invoice, InvoiceError,
    |c, conn| super::void(conn, c.tenant, c.invoice_id));

pub struct RefundInvoicePayment {
    pub tenant: Tenant,
    pub invoice_id: Uuid,
    pub payment_id: Uuid,
    pub input: RefundPayment,
}

command!(RefundInvoicePayment: "invoice.refund_payment" => keyed RefundReceipt, InvoiceError,
    |c, unit, key| super::refund_payment(unit, key, c.tenant, c.invoice_id, c.payment_id, c.input));

pub struct IssueCreditNote {
    pub tenant: Tenant,
    pub invoice_id: Uuid,
    pub input: CreateCreditNote,
}

command!(IssueCreditNote: "invoice.credit_note" => keyed CreditNote, InvoiceError,
    |c, unit, key| super::credit_note(unit, key, c.tenant, c.invoice_id, c.input));
