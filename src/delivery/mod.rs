//! Webhook delivery: POST, signing, retry, dead letters.

pub mod sign;
