//! The dispatcher thread: decides when a batch is due and starts it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use event_listener::Listener;

use super::queue::Phase;
use super::{GrinderInner, StopMode, batch};
use crate::state::deadline_after;
use crate::{Error, LocalBackend};

pub(super) fn spawn<B: LocalBackend>(inner: Arc<GrinderInner<B>>) -> Result<(), Error> {
    let name = format!("{}-dispatch", inner.owner_prefix);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&inner))
        .map(drop)
        .map_err(|e| Error::Broken(format!("cannot spawn the grinder's dispatcher thread: {e}")))
}

/// What the dispatcher does next.
enum Step {
    Batch(u64, Vec<crate::Task>),
    Sleep(Option<Instant>),
    Exit,
}

fn run<B: LocalBackend>(inner: &Arc<GrinderInner<B>>) {
    loop {
        let step = next_step(inner);
        match step {
            Step::Batch(number, tasks) => batch::spawn(inner.clone(), number, tasks),
            Step::Exit => {
                inner.stopped.notify(usize::MAX);
                log::info!(target: "leasepool", "work grinder stopped");
                return;
            }
            Step::Sleep(deadline) => {
                let listener = inner.wake.listen();
                if inner.kicked.swap(false, Ordering::AcqRel) {
                    continue;
                }
                match deadline {
                    Some(at) => {
                        listener.wait_deadline(at);
                    }
                    None => listener.wait(),
                }
            }
        }
    }
}

fn next_step<B: LocalBackend>(inner: &GrinderInner<B>) -> Step {
    let now = Instant::now();
    let max_batches = inner.manager.config().max_pools();
    let mut queue = inner.queue();
    let draining = matches!(queue.phase, Phase::Stopping(StopMode::Drain));
    if let Phase::Stopping(_) = queue.phase {
        if queue.pending.is_empty() && queue.running_batches == 0 {
            queue.phase = Phase::Stopped;
            return Step::Exit;
        }
    }
    let Some(oldest) = queue.pending.front().map(|item| item.enqueued_at) else {
        return Step::Sleep(None);
    };
    let due_at = deadline_after(oldest, inner.max_wait);
    let due = draining || queue.pending.len() >= inner.batch_size_threshold || now >= due_at;
    if !due {
        return Step::Sleep(Some(due_at));
    }
    if queue.running_batches >= max_batches {
        // Every pool could be busy with our batches: wait for one to end
        // (it kicks us) rather than queue more lease requests.
        return Step::Sleep(None);
    }
    let (number, tasks) = queue.take_batch();
    Step::Batch(number, tasks)
}
