//! `call`: plain functions with serialisable argument and result, on an
//! in-process backend and through the remote form a process backend uses.

use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use leasepool::{
    BackendPool, Error, ExecutorBackend, LeasedExecutorManager, PoolContext, Task, function_name,
};

use crate::common::*;

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn shout(text: String) -> String {
    text.to_uppercase()
}

fn fails(_: ()) -> u8 {
    panic!("call failed")
}

#[test]
fn call_runs_a_function_on_the_thread_backend() {
    let m = builder("call-th").max_pools(1).build().unwrap();
    block_on(async {
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        assert_eq!(lease.call(add, (2, 40)).await, Ok(42));
        assert_eq!(
            lease.executor().call(shout, "hi".to_owned()).await,
            Ok("HI".to_owned())
        );
        assert_eq!(
            lease.call(fails, ()).await,
            Err(Error::Panicked("call failed".to_owned()))
        );
        assert_eq!(lease.submit_call(add, (1, 1)).unwrap().wait(), Ok(2));
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn function_names_identify_function_items() {
    assert!(
        function_name(add).ends_with("::add"),
        "{}",
        function_name(add)
    );
    assert_ne!(function_name(add), function_name(shout));
}

/// A backend that runs `call` jobs the way a process backend does: encode
/// the argument, "send" the bytes with the function name, decode the result.
#[derive(Clone)]
struct Remote;

struct RemotePool {
    jobs: Mutex<Option<Sender<Task>>>,
}

/// Encodes any serialisable value with postcard, through erased-serde.
fn encode(value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, Error> {
    use postcard::ser_flavors::Flavor;
    let mut serializer = postcard::Serializer {
        output: postcard::ser_flavors::StdVec::new(),
    };
    erased_serde::serialize(value, &mut serializer)
        .map_err(|e| Error::Serialization(e.to_string()))?;
    serializer
        .output
        .finalize()
        .map_err(|e| Error::Serialization(e.to_string()))
}

/// The "worker side": look the function up by name and run it.
fn serve(function: &str, argument: &[u8]) -> Result<Vec<u8>, Error> {
    if function == function_name(add) {
        let arg: (u64, u64) =
            postcard::from_bytes(argument).map_err(|e| Error::Serialization(e.to_string()))?;
        encode(&add(arg))
    } else {
        Err(Error::UnknownFunction(function.to_owned()))
    }
}

impl ExecutorBackend for Remote {
    type Pool = RemotePool;

    fn name(&self) -> &'static str {
        "remote"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<RemotePool, Error> {
        let (tx, rx) = channel::<Task>();
        let guard = ctx.worker_guard();
        std::thread::spawn(move || {
            let _guard = guard;
            for task in rx {
                let call = match task.into_remote() {
                    Ok(call) => call,
                    Err(task) => {
                        task.fail(Error::UnsupportedBackend(
                            "closures cannot leave the process".into(),
                        ));
                        continue;
                    }
                };
                if !call.start() {
                    continue;
                }
                let encoded = encode(call.argument());
                match encoded.and_then(|bytes| serve(call.function(), &bytes)) {
                    Ok(reply) => {
                        let mut de = postcard::Deserializer::from_bytes(&reply);
                        call.deliver(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de));
                    }
                    Err(error) => call.fail(error),
                }
            }
        });
        Ok(RemotePool {
            jobs: Mutex::new(Some(tx)),
        })
    }
}

impl BackendPool for RemotePool {
    fn execute(&self, task: Task) {
        if let Some(tx) = &*self.jobs.lock().unwrap() {
            let _ = tx.send(task);
        }
    }

    fn shutdown(&self) {
        self.jobs.lock().unwrap().take();
    }
}

#[test]
fn the_remote_form_carries_name_argument_and_result() {
    let m = LeasedExecutorManager::builder(Remote)
        .max_pools(1)
        .name_prefix("call-rm")
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(lease.submit_call(add, (20, 22)).unwrap().wait(), Ok(42));
    match lease.submit_call(shout, "x".to_owned()).unwrap().wait() {
        Err(Error::UnknownFunction(name)) => assert!(name.ends_with("::shout"), "{name}"),
        other => panic!("expected UnknownFunction, got {other:?}"),
    }
    drop(lease);
    m.stop_blocking();
}
