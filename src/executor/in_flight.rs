//! Same-key requests of one instance queue here rather than in PostgreSQL.
//! A duplicate waiting for its key's first request holds no pooled
//! connection, so a burst of identical retries cannot starve unrelated
//! requests of connections. Correctness still comes from the database: with
//! several instances each lets one request per key through to the key's row
//! lock. This only bounds who waits, and for how long.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

type Slot = Arc<tokio::sync::Mutex<()>>;
type Key = (Uuid, String);

/// Above this many idle entries a release sweeps them all (an entry can be
/// left behind when a waiting request is cancelled mid-wait).
const SWEEP_ABOVE: usize = 4096;

pub struct InFlight {
    slots: Mutex<HashMap<Key, Slot>>,
    max_waiters: usize,
}

/// The right to run the key's request in this instance, until dropped.
pub struct Turn<'a> {
    owner: &'a InFlight,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl InFlight {
    pub fn new(max_waiters: usize) -> Self {
        InFlight {
            slots: Mutex::new(HashMap::new()),
            max_waiters,
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<Key, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (FIFO, at most `wait`) for the key's earlier requests to finish.
    /// `None`: too many are already waiting, or the wait ran out.
    pub async fn turn(&self, shop_id: Uuid, key: &str, wait: Duration) -> Option<Turn<'_>> {
        let key = (shop_id, key.to_owned());
        let slot = {
            let mut slots = self.slots();
            let slot = slots.entry(key.clone()).or_default();
            // References: the map's, the running request's guard, one per waiter.
            if Arc::strong_count(slot) >= 2 + self.max_waiters {
                return None;
            }
            slot.clone()
        };
        let mut turn = Turn {
            owner: self,
            key,
            guard: None,
        };
        turn.guard = Some(tokio::time::timeout(wait, slot.lock_owned()).await.ok()?);
        Some(turn)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots().len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut slots = self.owner.slots();
        // Released under the map lock, so no one can clone the slot between
        // the release and the count below.
        drop(self.guard.take());
        if slots.get(&self.key).is_some_and(|s| Arc::strong_count(s) == 1) {
            slots.remove(&self.key);
        }
        if slots.len() > SWEEP_ABOVE {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_runs_a_bounded_number_wait_and_nothing_is_left_behind() {
        let in_flight = Arc::new(InFlight::new(2));
        let shop = Uuid::now_v7();
        let wait = Duration::from_secs(30);
        let first = in_flight.turn(shop, "k", wait).await.expect("free key");
        // Two waiters queue behind the first; a third is refused at once.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..2 {
            let (in_flight, tx) = (in_flight.clone(), tx.clone());
            tokio::spawn(async move {
                let turn = in_flight.turn(shop, "k", wait).await;
                tx.send((i, turn.is_some())).unwrap();
            });
        }
        while Arc::strong_count(&in_flight.slots().get(&(shop, "k".into())).unwrap().clone()) < 5 {
            tokio::task::yield_now().await;
        }
        assert!(
            in_flight.turn(shop, "k", wait).await.is_none(),
            "a third waiter is refused"
        );
        assert!(
            in_flight.turn(shop, "other", wait).await.is_some(),
            "other keys run freely"
        );
        assert!(
            in_flight.turn(Uuid::now_v7(), "k", wait).await.is_some(),
            "keys are per shop"
        );
        drop(first);
        let mut got = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        got.sort();
        assert_eq!(got, vec![(0, true), (1, true)]);
        assert_eq!(in_flight.len(), 0, "released keys leave no entry");
    }

    #[tokio::test]
    async fn a_wait_is_bounded() {
        let in_flight = InFlight::new(8);
        let shop = Uuid::now_v7();
        let _first = in_flight.turn(shop, "k", Duration::from_secs(1)).await.unwrap();
        assert!(
            in_flight
                .turn(shop, "k", Duration::from_millis(20))
                .await
                .is_none()
        );
        drop(_first);
        assert_eq!(in_flight.len(), 0);
    }
}
