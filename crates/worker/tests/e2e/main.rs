//! CHUM end to end: one test binary (the Temporal SDK is linked once, not once per area) with a
//! module per area. Each test runs on a real Temporal dev server with the real worker, git,
//! semgrep, bubblewrap and the scripted agent, through `chum-testkit`.

mod api;
mod bad_input;
mod codec;
mod compose;
mod console;
mod coordination;
mod dispatcher;
mod environments;
mod faults;
mod grooming;
mod learning;
mod many_sharks;
mod merge_queue;
mod merge_requests;
mod monte_carlo;
mod named_gates;
mod notifications;
mod operations;
mod pull_requests;
mod remote;
mod result_gate;
mod sandbox;
mod several_hosts;
mod shared_store;
mod shark_paths;
mod tls;
mod worker_binary;
