//! The dispatcher thread: decides when a batch is due, acquires its lease
//! without blocking, and launches it.

use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Instant;

use super::batch::Waiting;
use super::queue::Phase;
use super::{GrinderInner, StopMode};
use crate::observe::Event;
use crate::state::deadline_after;
use crate::wait::Alarm;
use crate::{Error, ExecutorBackend, Task};

pub(super) fn spawn<B: ExecutorBackend>(inner: Arc<GrinderInner<B>>) -> Result<(), Error> {
    let name = format!("{}-dispatch", inner.owner_prefix);
    let weak = Arc::downgrade(&inner);
    let signal = inner.signal.clone();
    drop(inner);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&weak, &signal))
        .map(drop)
        .map_err(|e| Error::Broken(format!("cannot spawn the grinder's dispatcher thread: {e}")))
}

/// Wakes the dispatcher when a batch's lease request can make progress.
struct Kick(Arc<Alarm>);

impl Wake for Kick {
    fn wake(self: Arc<Self>) {
        self.0.kick();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.kick();
    }
}

/// What the dispatcher does next.
enum Step {
    Batch(u64, Vec<Task>),
    Sleep(Option<Instant>),
    CancelWaiting,
    Exit,
}

fn run<B: ExecutorBackend>(weak: &Weak<GrinderInner<B>>, signal: &Arc<Alarm>) {
    let waker = Waker::from(Arc::new(Kick(signal.clone())));
    let mut cx = Context::from_waker(&waker);
    let mut waiting: Vec<Waiting<B>> = Vec::new();
    loop {
        let deadline = {
            // Dropped without stop(): the waiting batches' items are
            // dropped with them (cancelled).
            let Some(inner) = weak.upgrade() else { return };
            // Leases first: a granted batch launches at once.
            waiting.retain_mut(|batch| batch.poll(&inner, &mut cx).is_none());
            match next_step(&inner, !waiting.is_empty()) {
                Step::Batch(number, tasks) => {
                    waiting.push(Waiting::new(&inner, number, tasks));
                    continue;
                }
                Step::CancelWaiting => {
                    for batch in waiting.drain(..) {
                        batch.cancel(&inner);
                    }
                    continue;
                }
                Step::Exit => {
                    inner.stopped.notify(usize::MAX);
                    inner.observe(|| Event::GrinderStopped);
                    return;
                }
                Step::Sleep(deadline) => deadline,
            }
        };
        signal.sleep(deadline);
    }
}

fn next_step<B: ExecutorBackend>(inner: &GrinderInner<B>, has_waiting: bool) -> Step {
    let now = Instant::now();
    let max_batches = inner.max_batches;
    let mut queue = inner.queue();
    match queue.phase {
        Phase::Stopping(StopMode::Cancel) if has_waiting => {
            return Step::CancelWaiting;
        }
        // Running batches were cancelled (by stop, or by themselves when
        // launched): their running items end on their own.
        Phase::Stopping(StopMode::Cancel) if queue.pending() == 0 => {
            queue.phase = Phase::Stopped;
            return Step::Exit;
        }
        Phase::Stopping(StopMode::Drain) if queue.pending() == 0 && queue.running_batches == 0 => {
            queue.phase = Phase::Stopped;
            return Step::Exit;
        }
        _ => {}
    }
    let draining = matches!(queue.phase, Phase::Stopping(StopMode::Drain));
    let Some(oldest) = queue.oldest_enqueued_at() else {
        return Step::Sleep(None);
    };
    let due_at = deadline_after(oldest, inner.max_wait);
    let due = draining || queue.pending() >= inner.batch_size_threshold || now >= due_at;
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
