//! Simulated ConnectWise Manage REST API.
