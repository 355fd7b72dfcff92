//! pollerd: polls REST APIs on an interval and delivers what changed as signed webhooks.
//!
//! Data flows one way: files → [`config`] → [`supervisor`] → [`poller`] (through an
//! [`element`]) → [`store`] → [`delivery`]. Around it: [`watch`], [`admin`], [`metrics`],
//! [`systemd`], [`logging`]; [`daemon`] assembles them, [`sim`] simulates their peers.

pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dates;
pub mod delivery;
pub mod element;
pub mod http_util;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod poller;
pub mod sim;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod task_guard;
pub mod template;
pub mod time_math;
pub mod url_display;
pub mod watch;
