//! The job queue of one pool: a mutex-protected deque and a condition
//! variable.
//!
//! Idle workers sleep on the condition variable and each job wakes exactly
//! one of them. A channel such as crossbeam's spins and yields before it
//! parks a receiver, which costs context switches when the machine has
//! more busy threads than cores (the situation leasepool exists for); this
//! queue never spins. Closing it hands back what was still queued, so
//! shutdown cancels queued jobs at once instead of when a busy worker gets
//! to them.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use leasepool_core::Task;

#[derive(Debug, Default)]
struct State {
    tasks: VecDeque<Task>,
    closed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct JobQueue {
    state: Mutex<State>,
    ready: Condvar,
}

impl JobQueue {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `task` and wakes one idle worker; hands it back once closed.
    pub(crate) fn push(&self, task: Task) -> Result<(), Task> {
        {
            let mut state = self.state();
            if state.closed {
                return Err(task);
            }
            state.tasks.push_back(task);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest task, waiting for one; `None` once closed (and drained).
    pub(crate) fn pop(&self) -> Option<Task> {
        let mut state = self.state();
        loop {
            if let Some(task) = state.tasks.pop_front() {
                return Some(task);
            }
            if state.closed {
                return None;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Refuses further tasks, wakes every worker, and returns the tasks
    /// still queued (to be cancelled or failed by the caller, outside the
    /// lock).
    pub(crate) fn close(&self) -> Vec<Task> {
        let queued = {
            let mut state = self.state();
            state.closed = true;
            state.tasks.drain(..).collect()
        };
        self.ready.notify_all();
        queued
    }
}
