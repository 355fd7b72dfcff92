//! Provider adapters: fetch one page of a resource.

pub mod connectwise;
