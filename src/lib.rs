//! pollerd: polls REST APIs on an interval and delivers what changed as signed webhooks.
//!
//! Data flows one way: files → [`config`] → `supervisor` → `poller` (through an
//! [`element`]) → [`store`] → `delivery`.

pub mod cli;
pub mod config;
pub mod dates;
pub mod delivery;
pub mod element;
pub mod http_headers;
pub mod logging;
pub mod poller;
pub mod sim;
pub mod store;
pub mod systemd;
pub mod template;
pub mod watch;
