//! A batch item as the single request it stands for: its command's input,
//! parsed and validated exactly as that request's body would be, and its
//! key with the fingerprint of that request (method, path, body), so the
//! item and the single request are the same request to the key's record.

use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;
use validator::Validate;

use crate::{
    executor::Request,
    http::{ApiError, extract::parse_json},
    idempotency::{self, IdempotencyKey},
    reservations::{CaptureReservation, CreateReservation, ReleaseReservation},
    wallets::{CreditRequest, DebitRequest, RefundRequest, TransferRequest},
};

#[derive(Debug)]
pub enum Op {
    Credit {
        wallet_id: Uuid,
        input: CreditRequest,
    },
    Debit {
        wallet_id: Uuid,
        input: DebitRequest,
    },
    Transfer {
        input: TransferRequest,
    },
    Reserve {
        wallet_id: Uuid,
        input: CreateReservation,
    },
    Capture {
        reservation_id: Uuid,
        input: CaptureReservation,
    },
    Release {
        reservation_id: Uuid,
    },
    Refund {
        wallet_id: Uuid,
        transaction_id: Uuid,
        input: RefundRequest,
    },
}

#[derive(Debug)]
pub struct Item {
    pub op: Op,
    pub request: Request,
}

impl Op {
    /// The wallets it moves, where the item names them.
    pub fn wallets(&self) -> Vec<Uuid> {
        match self {
            Op::Credit { wallet_id, .. }
            | Op::Debit { wallet_id, .. }
            | Op::Reserve { wallet_id, .. }
            | Op::Refund { wallet_id, .. } => vec![*wallet_id],
            Op::Transfer { input } => vec![input.from_wallet_id, input.to_wallet_id],
            Op::Capture { .. } | Op::Release { .. } => Vec::new(),
        }
    }

    /// The hold it settles, whose wallet the batch looks up.
    pub fn reservation(&self) -> Option<Uuid> {
        match self {
            Op::Capture { reservation_id, .. } | Op::Release { reservation_id } => Some(*reservation_id),
            _ => None,
        }
    }
}

/// Every item parsed and validated, before anything is locked: the first
/// invalid item is a 422 naming its fields (`items[3].amount`), and a key
/// used by two items (or by the batch itself) a 422 naming both.
pub fn parse_all(items: Vec<Map<String, Value>>, batch: &Request) -> Result<Vec<Item>, ApiError> {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut parsed = Vec::with_capacity(items.len());
    for (index, fields) in items.into_iter().enumerate() {
        let item = parse(index, fields, &batch.request_id)?;
        let key = item.request.key.as_str();
        if key == batch.key.as_str() {
            return Err(ApiError::validation(
                &format!("items[{index}].idempotency_key"),
                "is the batch's own Idempotency-Key; each item needs a key of its own",
            ));
        }
        if let Some(&earlier) = first.get(key) {
            return Err(ApiError::Validation(BTreeMap::from([
                (
                    format!("items[{earlier}].idempotency_key"),
                    vec![format!("is also the key of items[{index}]")],
                ),
                (
                    format!("items[{index}].idempotency_key"),
                    vec![format!("is already the key of items[{earlier}]")],
                ),
            ])));
        }
        first.insert(key.to_owned(), index);
        parsed.push(item);
    }
    Ok(parsed)
}

const OPS: &str = "must be one of credit, debit, transfer, reserve, capture, release, refund";

fn parse(index: usize, mut fields: Map<String, Value>, request_id: &str) -> Result<Item, ApiError> {
    let at = |field: &str| format!("items[{index}].{field}");
    let op = match fields.remove("op") {
        Some(Value::String(op)) => op,
        _ => return Err(ApiError::validation(&at("op"), OPS)),
    };
    let key = match fields.remove("idempotency_key") {
        Some(Value::String(k)) => IdempotencyKey::parse(k.as_bytes())
            .map_err(|message| ApiError::validation(&at("idempotency_key"), message))?,
        _ => {
            return Err(ApiError::validation(
                &at("idempotency_key"),
                "is required: the item's own key, as its single request's Idempotency-Key",
            ));
        }
    };
    let mut id = |field: &str| -> Result<Uuid, ApiError> {
        match fields.remove(field) {
            Some(Value::String(s)) => {
                Uuid::parse_str(&s).map_err(|_| ApiError::validation(&at(field), "must be a UUID"))
            }
            _ => Err(ApiError::validation(&at(field), "is required (a UUID)")),
        }
    };
    // The single request's path, and what it carries.
    let (path, target) = match op.as_str() {
        "credit" | "debit" | "reserve" => {
            let w = id("wallet_id")?;
            let tail = if op == "reserve" {
                "reservations"
            } else {
                op.as_str()
            };
            (format!("/v1/wallets/{w}/{tail}"), Target::Wallet(w))
        }
        "transfer" => ("/v1/transfers".to_owned(), Target::None),
        "capture" | "release" => {
            let r = id("reservation_id")?;
            (format!("/v1/reservations/{r}/{op}"), Target::Reservation(r))
        }
        "refund" => {
            let w = id("wallet_id")?;
            let t = id("transaction_id")?;
            (
                format!("/v1/wallets/{w}/transactions/{t}/refund"),
                Target::Movement(w, t),
            )
        }
        _ => return Err(ApiError::validation(&at("op"), OPS)),
    };
    let body = Value::Object(fields);
    let op = match (op.as_str(), target) {
        ("credit", Target::Wallet(wallet_id)) => Op::Credit {
            wallet_id,
            input: typed(index, &body)?,
        },
        ("debit", Target::Wallet(wallet_id)) => Op::Debit {
            wallet_id,
            input: typed(index, &body)?,
        },
        ("reserve", Target::Wallet(wallet_id)) => Op::Reserve {
            wallet_id,
            input: typed(index, &body)?,
        },
        ("capture", Target::Reservation(reservation_id)) => Op::Capture {
            reservation_id,
            input: typed(index, &body)?,
        },
        ("release", Target::Reservation(reservation_id)) => {
            typed::<ReleaseReservation>(index, &body)?;
            Op::Release { reservation_id }
        }
        ("refund", Target::Movement(wallet_id, transaction_id)) => Op::Refund {
            wallet_id,
            transaction_id,
            input: typed(index, &body)?,
        },
        _ => Op::Transfer {
            input: typed(index, &body)?,
        },
    };
    let request = Request {
        key,
        fingerprint: idempotency::fingerprint("POST", &path, None, &body),
        request_id: request_id.to_owned(),
    };
    Ok(Item { op, request })
}

enum Target {
    None,
    Wallet(Uuid),
    Reservation(Uuid),
    Movement(Uuid, Uuid),
}

/// The body as its single request's input type, with that request's
/// validation; its fields named under the item.
fn typed<T: DeserializeOwned + Validate>(index: usize, body: &Value) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.into()))?;
    parse_json(&bytes).map_err(|e| match e {
        ApiError::Validation(errors) => ApiError::Validation(
            errors
                .into_iter()
                .map(|(field, messages)| (format!("items[{index}].{field}"), messages))
                .collect(),
        ),
        other => ApiError::validation(&format!("items[{index}]"), other.to_string()),
    })
}
