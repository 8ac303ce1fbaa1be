//! Recently authenticated keys, kept in process for at most a short TTL
//! (never more than 2 s), so most requests skip the key lookup while a
//! revoked key stops working within the TTL. Only successes are cached: an
//! unknown key always reaches the database, and cannot evict good entries
//! by the thousand.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::Tenant;

/// The longest a revoked key may keep working on one instance.
pub const MAX_TTL: Duration = Duration::from_secs(2);
/// Beyond this many entries the stale ones are dropped, then all if needed.
const MAX_ENTRIES: usize = 10_000;

pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Tenant, Instant)>>,
}

impl AuthCache {
    /// `ttl` is capped at [`MAX_TTL`]; zero disables the cache.
    pub fn new(ttl: Duration) -> Self {
        AuthCache {
            ttl: ttl.min(MAX_TTL),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant of a key digest authenticated less than the TTL ago.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Tenant> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (tenant, at) = entries.get(digest)?;
        (at.elapsed() < self.ttl).then_some(*tenant)
    }

    /// `read_at`: when the lookup that found `tenant` started, so an entry
    /// never outlives a revocation by more than the TTL.
    pub fn put(&self, digest: [u8; 32], tenant: Tenant, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(digest, (tenant, read_at));
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::tenants::Role;

    fn tenant() -> Tenant {
        Tenant {
            shop_id: Uuid::now_v7(),
            key_id: Uuid::now_v7(),
            role: Role::Owner,
        }
    }

    #[test]
    fn entries_live_at_most_the_ttl_which_is_capped() {
        let cache = AuthCache::new(Duration::from_millis(50));
        let t = tenant();
        cache.put([1; 32], t, Instant::now());
        assert_eq!(cache.get(&[1; 32]), Some(t));
        assert_eq!(cache.get(&[2; 32]), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&[1; 32]), None, "expired");
        assert_eq!(AuthCache::new(Duration::from_secs(60)).ttl, MAX_TTL);
        let off = AuthCache::new(Duration::ZERO);
        off.put([1; 32], t, Instant::now());
        assert_eq!(off.get(&[1; 32]), None);
    }

    #[test]
    fn memory_stays_bounded() {
        let cache = AuthCache::new(Duration::from_secs(1));
        for i in 0..(MAX_ENTRIES + 10) as u32 {
            let mut d = [0; 32];
            d[..4].copy_from_slice(&i.to_le_bytes());
            cache.put(d, tenant(), Instant::now());
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
