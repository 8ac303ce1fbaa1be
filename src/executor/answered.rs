//! Keys this instance has seen answered, so a retry of one reads its
//! record in one statement instead of opening a transaction to claim it
//! (begin, the claiming statement, the read, rollback). It is a hint, not a
//! cache of answers: the database still decides (a live, completed record
//! with the same fingerprint), so an expired record, a record taken over by
//! another instance or a hint that collided with another key all fall back
//! to the claim. A retry that reaches another instance takes the claim too.

use std::{
    collections::HashSet,
    hash::{BuildHasher, RandomState},
    sync::Mutex,
};

use uuid::Uuid;

use super::Request;

/// Above this many hints the set starts again empty: hints cost 8 bytes
/// each, and a retry usually follows its request within seconds.
const CAPACITY: usize = 200_000;

#[derive(Default)]
pub struct Answered {
    seen: Mutex<HashSet<u64>>,
    hasher: RandomState,
}

impl Answered {
    fn hint(&self, shop_id: Uuid, request: &Request) -> u64 {
        self.hasher
            .hash_one((shop_id, request.key.as_str(), request.fingerprint))
    }

    pub fn remember(&self, shop_id: Uuid, request: &Request) {
        let hint = self.hint(shop_id, request);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= CAPACITY {
            seen.clear();
        }
        seen.insert(hint);
    }

    pub fn knows(&self, shop_id: Uuid, request: &Request) -> bool {
        let hint = self.hint(shop_id, request);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&hint)
    }
}
