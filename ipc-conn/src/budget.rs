//! What a peer may have waiting for the application: inbound memory
//! bounded in bytes, per peer.
//!
//! Every event a connection delivers to the application's event streams is
//! charged to that connection's [`Budget`]: the frame's length plus
//! [`EVENT_OVERHEAD`]. The charge travels with the event and is given back
//! when the application takes the event from its stream. While a peer's
//! budget is full, its driver waits before reading the next frame, so the
//! kernel's socket buffers fill and the peer is slowed down — that peer
//! only: the others have budgets of their own.
//!
//! Handlers run while the frame is delivered and keep nothing waiting, so a
//! connection without event streams is never charged.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What one waiting event costs beyond its frame: the event, its peer
/// handle and the stream's queue node, rounded up. It also bounds how many
/// tiny events a budget holds.
pub const EVENT_OVERHEAD: usize = 256;

/// The default per-peer budget (4 MiB).
pub const DEFAULT_INBOUND_BYTES: usize = 4 * 1024 * 1024;

/// A byte budget for the events one peer has waiting in the application's
/// event streams. Cloning gives another handle to the same budget.
#[derive(Debug, Clone)]
pub struct Budget {
    room: Arc<Semaphore>,
    limit: usize,
}

impl Budget {
    /// A budget of `bytes` (at least one event's overhead, at most 4 GiB).
    pub fn new(bytes: usize) -> Budget {
        let limit = bytes.clamp(EVENT_OVERHEAD, u32::MAX as usize);
        Budget {
            room: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// The budget's size in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged and not given back yet.
    pub fn charged(&self) -> usize {
        self.limit - self.room.available_permits().min(self.limit)
    }

    fn cost(&self, cost: usize) -> u32 {
        // An event larger than the whole budget takes all of it: it waits
        // until nothing else is waiting instead of never fitting.
        cost.clamp(1, self.limit) as u32
    }

    /// Charges `cost` bytes, waiting while the budget has no room for them.
    /// Cancel-safe: a charge that is dropped before it completes takes
    /// nothing.
    pub async fn charge(&self, cost: usize) -> Charge {
        let n = self.cost(cost);
        match self.room.clone().try_acquire_many_owned(n) {
            Ok(p) => Charge(Some(p)),
            // The semaphore is never closed; a closed one charges nothing.
            Err(_) => Charge(self.room.clone().acquire_many_owned(n).await.ok()),
        }
    }

    /// Charges `cost` bytes if there is room now.
    pub fn try_charge(&self, cost: usize) -> Option<Charge> {
        let n = self.cost(cost);
        self.room
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(|p| Charge(Some(p)))
    }
}

/// Room taken from a [`Budget`], given back when dropped.
#[derive(Debug, Default)]
pub struct Charge(Option<OwnedSemaphorePermit>);

impl Charge {
    /// A charge on no budget (events nobody needs to account for).
    pub fn none() -> Charge {
        Charge(None)
    }

    /// The bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn charges_wait_for_room_and_are_given_back_on_drop() {
        let b = Budget::new(1000);
        let a = b.charge(600).await;
        assert_eq!(b.charged(), 600);
        assert!(b.try_charge(600).is_none());
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.charge(600).await.bytes() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a);
        assert_eq!(waiting.await.ok(), Some(600));
        assert_eq!(b.charged(), 0);
    }

    #[tokio::test]
    async fn an_event_larger_than_the_budget_takes_all_of_it() {
        let b = Budget::new(1000);
        let big = b.charge(5000).await;
        assert_eq!(big.bytes(), 1000);
        assert!(b.try_charge(1).is_none());
        drop(big);
        assert!(b.try_charge(1).is_some());
        assert_eq!(Charge::none().bytes(), 0);
    }
}
