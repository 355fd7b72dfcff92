//! Simulated servers used by tests, benchmarks and `pollerd demo`: a ConnectWise Manage API and a
//! webhook receiver, both real HTTP servers on loopback.

pub mod connectwise;
pub mod receiver;
