//! The `connectwisecrmrest` element.

pub mod ceql;
pub mod hubs;
