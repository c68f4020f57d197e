//! Followers waiting for the line's cursor to reach a value of their own.
//!
//! An admission turn moves the cursor; a follower far back in line has
//! nothing to tell its fan until the cursor has moved far enough. Waking
//! every follower at every turn to let each find that out costs a task
//! poll per follower per turn: with 100,000 followers and several turns a
//! second, more than the server's whole CPU. Here each follower waits for
//! its own threshold, and a turn wakes only those whose threshold it passed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// The waiting followers, by the cursor each waits for (then a serial
/// number, so that thresholds may repeat).
#[derive(Default)]
pub struct CursorWaits {
    state: Mutex<WaitState>,
}

#[derive(Default)]
struct WaitState {
    cursor: u64,
    next_serial: u64,
    waiting: BTreeMap<(u64, u64), oneshot::Sender<()>>,
}

/// One follower's wait: resolves once the cursor reaches its threshold;
/// dropping it withdraws the wait.
pub struct CursorWait<'a> {
    waits: &'a CursorWaits,
    key: (u64, u64),
    reached: oneshot::Receiver<()>,
}

impl CursorWaits {
    /// A wait for the cursor to be at least `threshold`; resolved at once
    /// when it already is.
    pub fn wait_for(&self, threshold: u64) -> CursorWait<'_> {
        let (tell, reached) = oneshot::channel();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let key = (threshold, state.next_serial);
        state.next_serial += 1;
        if state.cursor >= threshold {
            let _ = tell.send(());
        } else {
            state.waiting.insert(key, tell);
        }
        CursorWait {
            waits: self,
            key,
            reached,
        }
    }

    /// The cursor moved to `cursor`: wakes every wait it reached.
    pub fn advance(&self, cursor: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if cursor <= state.cursor {
            return;
        }
        state.cursor = cursor;
        let later = state.waiting.split_off(&(cursor + 1, 0));
        let reached = std::mem::replace(&mut state.waiting, later);
        drop(state);
        for (_, tell) in reached {
            let _ = tell.send(());
        }
    }

    /// Waits not yet reached.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.state
            .lock()
            .map(|state| state.waiting.len())
            .unwrap_or(0)
    }
}

impl CursorWait<'_> {
    pub async fn reached(&mut self) {
        // A dropped sender means the runtime is going away: nothing to wait for.
        let _ = (&mut self.reached).await;
    }
}

impl Drop for CursorWait<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.waits.state.lock() {
            state.waiting.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_wakes_only_the_waits_it_reached() {
        let waits = CursorWaits::default();
        let mut near = waits.wait_for(10);
        let mut far = waits.wait_for(1_000);
        waits.advance(10);
        near.reached().await;
        assert_eq!(waits.pending(), 1, "the far wait still waits");
        assert!(far.reached.try_recv().is_err(), "not reached yet");
        waits.advance(999);
        assert!(far.reached.try_recv().is_err(), "one short is not reached");
        waits.advance(1_000);
        far.reached().await;
        assert_eq!(waits.pending(), 0);
    }

    #[tokio::test]
    async fn a_threshold_already_passed_is_reached_at_once_and_a_dropped_wait_is_withdrawn() {
        let waits = CursorWaits::default();
        waits.advance(50);
        waits.wait_for(50).reached().await;
        let withdrawn = waits.wait_for(51);
        assert_eq!(waits.pending(), 1);
        drop(withdrawn);
        assert_eq!(
            waits.pending(),
            0,
            "a follower that leaves leaves nothing behind"
        );
        waits.advance(40);
        let mut later = waits.wait_for(45);
        later.reached().await; // the cursor never goes back
    }
}
