//! The scripted agent's scenario format, as a library: the `chum-scripted-agent` binary plays a
//! scenario; CHUM's tests and benchmark write one with the same types (`scenario::Step`'s builder
//! methods), so a scenario a test writes is one the agent can read.

mod build;
pub mod scenario;
