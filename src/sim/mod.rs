//! Simulated servers (ConnectWise API, webhook receiver) used by tests, benchmarks and `pollerd demo`.
