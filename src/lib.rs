//! pollerd: polls REST APIs on an interval and delivers what changed as signed webhooks.
//!
//! Data flows one way: files → [`config`] → [`supervisor`] → [`poller`] (through an
//! [`element`]) → [`store`] → [`delivery`]. Around it: [`watch`], [`admin`], [`metrics`] and the
//! [`internal_events`] that update it and write the log, [`systemd`], [`logging`]; [`daemon`]
//! assembles them, [`sim`] simulates their peers.
//!
//! The pure parsers that `config` validates with and the downstream modules use are leaf modules
//! that import none of the pipeline: [`callback`], [`signing`], [`hubs`], [`ceql`], [`dates`],
//! [`template`], [`tls_roots`] (tests/architecture.rs holds `config` and them to it).

// A function of more than 80 lines (clippy.toml) is a pipeline in one body: split it into named
// steps, or say why it is long in an `allow` on it. Tests and the simulator are exempt.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod admin;
pub mod callback;
// Parsers of operator-written text (CEQL, hub URLs): they index within their input and are held
// by a fuzz target (fuzz/: ceql) instead of by clippy::arithmetic_side_effects.
#[allow(clippy::arithmetic_side_effects)]
pub mod ceql;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dates;
pub mod delivery;
pub mod element;
pub mod http_util;
pub mod intern;
pub mod internal_events;
// As `ceql`.
#[allow(clippy::arithmetic_side_effects)]
pub mod hubs;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod object_id;
pub mod poller;
pub mod signing;
// A test peer, not the product: its request handlers read best as one body each.
#[allow(clippy::too_many_lines)]
pub mod sim;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod task_guard;
pub mod template;
pub mod time_math;
pub mod tls_roots;
pub mod url_display;
pub mod watch;
