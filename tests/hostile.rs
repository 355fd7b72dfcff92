//! The real daemon, and its listeners, against peers that misbehave on purpose: a provider
//! (`hostile_provider`), a receiver (`hostile_receiver`) and idle clients of the metrics port and
//! the admin socket (`hostile_listeners`). One crate, so the suite links one binary for them.

mod support;

#[path = "hostile/listeners.rs"]
mod hostile_listeners;
#[path = "hostile/provider.rs"]
mod hostile_provider;
#[path = "hostile/receiver.rs"]
mod hostile_receiver;
