//! The grinder's queue of pending items and its lifecycle phase.
//!
//! Pending items sit in a deque indexed by item id: ids are handed out in
//! submission order, one apart, so the item with id `first_id + i` is at
//! index `i`. Queueing appends, a caller that cancels a pending item
//! empties its slot wherever it stands, and taking a batch drains the
//! deque: every operation is O(1) per item whatever the queue's length.
//! Emptied slots at the front are dropped at once, so the front slot, when
//! there is one, always holds the oldest pending item.

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
    pub(super) enqueued_at: Instant,
    pub(super) task: Task,
}

/// A deque kept after a batch is taken, up to this many slots (a bigger
/// one is given back to the allocator).
const KEPT_CAPACITY: usize = 4096;

/// Everything the grinder's lock guards.
#[derive(Debug)]
pub(super) struct Queue {
    pub(super) phase: Phase,
    /// Pending items by id (see the module): `None` where one was
    /// cancelled; the front slot, if any, is never `None`.
    slots: VecDeque<Option<Item>>,
    /// The id of the item in `slots[0]`.
    first_id: u64,
    /// Items in `slots` (not cancelled).
    pending: usize,
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
            slots: VecDeque::new(),
            first_id: 1,
            pending: 0,
            running_batches: 0,
            running: Vec::new(),
            next_item: 0,
            next_batch: 0,
        }
    }
}

impl Queue {
    /// Items queued and not yet taken or cancelled.
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    /// The id the next pushed item must have.
    pub(super) fn next_item_id(&mut self) -> u64 {
        self.next_item += 1;
        self.next_item
    }

    /// Queues item `id`, which `next_item_id` just handed out.
    pub(super) fn push(&mut self, id: u64, enqueued_at: Instant, task: Task) {
        if self.slots.is_empty() {
            self.first_id = id;
        }
        debug_assert_eq!(id, self.first_id + self.slots.len() as u64);
        self.slots.push_back(Some(Item { enqueued_at, task }));
        self.pending += 1;
    }

    /// Removes a pending item (its caller cancelled it). The task is
    /// returned so it is dropped outside the lock.
    pub(super) fn remove(&mut self, id: u64) -> Option<Task> {
        let index = usize::try_from(id.checked_sub(self.first_id)?).ok()?;
        let item = self.slots.get_mut(index)?.take()?;
        self.pending -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.first_id += 1;
        }
        Some(item.task)
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
        let mut tasks = Vec::with_capacity(self.pending);
        tasks.extend(self.slots.drain(..).flatten().map(|item| item.task));
        self.slots.shrink_to(KEPT_CAPACITY);
        self.first_id = self.next_item + 1;
        self.pending = 0;
        tasks
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
        self.slots
            .front()
            .and_then(Option::as_ref)
            .map(|item| item.enqueued_at)
    }

    /// Batch `number` ended (ran, failed, or was cancelled).
    pub(super) fn batch_finished(&mut self, number: u64) {
        self.running_batches -= 1;
        self.running.retain(|(n, _)| *n != number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_of(n: u64) -> (Queue, Vec<crate::JobHandle<u64>>) {
        let mut queue = Queue::default();
        let now = Instant::now();
        let handles = (0..n)
            .map(|i| {
                let id = queue.next_item_id();
                let (task, handle) = Task::new(move || i);
                queue.push(id, now, task);
                handle
            })
            .collect();
        (queue, handles)
    }

    #[test]
    fn removing_anywhere_keeps_order_and_count() {
        let (mut queue, _handles) = queue_of(6);
        assert!(queue.remove(3).is_some());
        assert!(queue.remove(3).is_none(), "removed once");
        assert!(queue.remove(1).is_some());
        assert!(queue.remove(0).is_none() && queue.remove(7).is_none());
        assert_eq!(queue.pending(), 4);
        assert!(queue.remove(2).is_some());
        // 1, 2 and 3 are gone: the front is item 4 now.
        assert_eq!(queue.first_id, 4);
        let (_, tasks) = queue.take_batch();
        assert_eq!(tasks.len(), 3);
        assert_eq!(queue.pending(), 0);
        assert!(queue.oldest_enqueued_at().is_none());
        assert!(queue.remove(5).is_none(), "taken into a batch");
    }

    #[test]
    fn ids_continue_after_a_batch_and_after_emptying() {
        let (mut queue, _handles) = queue_of(3);
        let _ = queue.take_batch();
        let (task, _h) = Task::new(|| 0);
        let id = queue.next_item_id();
        queue.push(id, Instant::now(), task);
        assert_eq!(id, 4);
        assert!(queue.remove(4).is_some());
        assert!(queue.slots.is_empty());
        let (task, _h) = Task::new(|| 0);
        let id = queue.next_item_id();
        queue.push(id, Instant::now(), task);
        assert!(queue.remove(5).is_some());
        assert_eq!(queue.pending(), 0);
    }
}
