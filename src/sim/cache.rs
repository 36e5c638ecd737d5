//! Clients' data, generated at most once per client by whichever thread asks first.
//!
//! A client's data is a pure function of (seed, client), so it does not matter who generates
//! it or when: the results are the same bits. That lets the simulator generate the data of
//! clients it expects to train next in the [`Pool`] ([`DataCache::prefetch`])
//! while the runtime thread is busy with the server's side of a round, instead of on the
//! critical path when their training starts.

use std::sync::{Arc, OnceLock};

use super::pool::Pool;
use crate::learn::{ClientData, DataGen};

/// One slot per client, filled on first use.
pub(crate) struct DataCache {
    gen: DataGen,
    slots: Vec<OnceLock<Arc<ClientData>>>,
}

impl DataCache {
    /// An empty cache for clients `0..clients`.
    pub fn new(gen: DataGen, clients: usize) -> Self {
        DataCache {
            gen,
            slots: (0..clients).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The generator behind the cache.
    pub fn gen(&self) -> &DataGen {
        &self.gen
    }

    /// Client `client`'s data: generated now if nobody has, or waited for if another thread
    /// is generating it.
    pub fn get(&self, client: u32) -> Arc<ClientData> {
        let make = || Arc::new(self.gen.client_data(u64::from(client)));
        match self.slots.get(client as usize) {
            Some(slot) => slot.get_or_init(make).clone(),
            None => make(),
        }
    }

    /// Queues the generation of `clients`' data in `pool`, so that it is ready when they
    /// train; clients whose data is already there queue nothing (the server's lookahead names
    /// the same clients more than once). Results never depend on whether or when this runs.
    pub fn prefetch(self: &Arc<Self>, pool: &Arc<Pool>, clients: Vec<u32>) {
        let ready = |c: u32| {
            self.slots
                .get(c as usize)
                .is_some_and(|slot| slot.get().is_some())
        };
        for c in clients.into_iter().filter(|&c| !ready(c)) {
            let cache = self.clone();
            pool.spawn(move || {
                cache.get(c);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::DataSpec;

    #[tokio::test(start_paused = true)]
    async fn prefetched_data_is_the_data_a_client_would_generate() {
        let gen = DataSpec::w1().generator(7);
        let cache = Arc::new(DataCache::new(gen.clone(), 4));
        cache.prefetch(&Pool::new(2), vec![1, 3]);
        for c in 0..4u32 {
            assert_eq!(*cache.get(c), gen.client_data(u64::from(c)));
        }
        // The same slot is returned every time, and clients past the end still get data.
        assert!(Arc::ptr_eq(&cache.get(1), &cache.get(1)));
        assert_eq!(*cache.get(9), gen.client_data(9));
    }
}
