//! The grinder's queue of pending items and its lifecycle phase.
//!
//! Pending items are an ordered map by item id: ids only grow, so map order
//! is submission order, and a caller that cancels a pending item removes it
//! in O(log n) wherever it stands.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::StopMode;
use super::batch::CancelBatch;
use crate::Task;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Stopped,
    Running,
    Stopping(StopMode),
}

#[derive(Debug)]
pub(super) struct Item {
    pub(super) enqueued_at: Instant,
    pub(super) task: Task,
}

/// Everything the grinder's lock guards.
#[derive(Debug)]
pub(super) struct Queue {
    pub(super) phase: Phase,
    pub(super) pending: BTreeMap<u64, Item>,
    /// Batches leasing or running (counted from when they are taken until
    /// they finish).
    pub(super) running_batches: usize,
    /// The batches on their lease, by number, for `stop(Cancel)`.
    pub(super) running: Vec<(u64, Weak<dyn CancelBatch>)>,
    next_item: u64,
    next_batch: u64,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            phase: Phase::Stopped,
            pending: BTreeMap::new(),
            running_batches: 0,
            running: Vec::new(),
            next_item: 0,
            next_batch: 0,
        }
    }
}

impl Queue {
    pub(super) fn next_item_id(&mut self) -> u64 {
        self.next_item += 1;
        self.next_item
    }

    pub(super) fn push(&mut self, id: u64, enqueued_at: Instant, task: Task) {
        self.pending.insert(id, Item { enqueued_at, task });
    }

    /// Removes a pending item (its caller cancelled it). The task is
    /// returned so it is dropped outside the lock.
    pub(super) fn remove(&mut self, id: u64) -> Option<Task> {
        self.pending.remove(&id).map(|item| item.task)
    }

    /// Takes every pending item as the next batch and numbers it.
    pub(super) fn take_batch(&mut self) -> (u64, Vec<Task>) {
        self.next_batch += 1;
        self.running_batches += 1;
        let tasks = self.take_pending();
        (self.next_batch, tasks)
    }

    /// `stop(Cancel)`: every pending task. (The dispatcher cancels the
    /// batches still waiting for a lease.)
    pub(super) fn cancel_all(&mut self) -> Vec<Task> {
        self.take_pending()
    }

    /// Every pending task, oldest first, leaving none pending.
    fn take_pending(&mut self) -> Vec<Task> {
        std::mem::take(&mut self.pending)
            .into_values()
            .map(|item| item.task)
            .collect()
    }

    /// `stop(Cancel)`: the running batches, to be cancelled outside the
    /// lock.
    pub(super) fn batches_on_lease(&self) -> Vec<Arc<dyn CancelBatch>> {
        self.running
            .iter()
            .filter_map(|(_, batch)| batch.upgrade())
            .collect()
    }

    /// When the oldest pending item was submitted.
    pub(super) fn oldest_enqueued_at(&self) -> Option<Instant> {
        self.pending
            .first_key_value()
            .map(|(_, item)| item.enqueued_at)
    }

    /// Batch `number` ended (ran, failed, or was cancelled).
    pub(super) fn batch_finished(&mut self, number: u64) {
        self.running_batches -= 1;
        self.running.retain(|(n, _)| *n != number);
    }
}
