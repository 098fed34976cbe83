//! The grinder's queue of pending items and its lifecycle phase.

use std::collections::VecDeque;
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
    pub(super) id: u64,
    pub(super) enqueued_at: Instant,
    pub(super) task: Task,
}

/// Everything the grinder's lock guards.
#[derive(Debug)]
pub(super) struct Queue {
    pub(super) phase: Phase,
    pub(super) pending: VecDeque<Item>,
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
            pending: VecDeque::new(),
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
        self.pending.push_back(Item {
            id,
            enqueued_at,
            task,
        });
    }

    /// Removes a pending item (its caller cancelled it). The task is
    /// returned so it is dropped outside the lock.
    pub(super) fn remove(&mut self, id: u64) -> Option<Task> {
        let index = self.pending.iter().position(|item| item.id == id)?;
        self.pending.remove(index).map(|item| item.task)
    }

    /// Takes every pending item as the next batch and numbers it.
    pub(super) fn take_batch(&mut self) -> (u64, Vec<Task>) {
        self.next_batch += 1;
        self.running_batches += 1;
        let tasks = self.pending.drain(..).map(|item| item.task).collect();
        (self.next_batch, tasks)
    }

    /// `stop(Cancel)`: every pending task. (The dispatcher cancels the
    /// batches still waiting for a lease.)
    pub(super) fn cancel_all(&mut self) -> Vec<Task> {
        self.pending.drain(..).map(|item| item.task).collect()
    }

    /// `stop(Cancel)`: the running batches, to be cancelled outside the
    /// lock.
    pub(super) fn batches_on_lease(&self) -> Vec<Arc<dyn CancelBatch>> {
        self.running
            .iter()
            .filter_map(|(_, batch)| batch.upgrade())
            .collect()
    }

    /// Batch `number` ended (ran, failed, or was cancelled).
    pub(super) fn batch_finished(&mut self, number: u64) {
        self.running_batches -= 1;
        self.running.retain(|(n, _)| *n != number);
    }
}
