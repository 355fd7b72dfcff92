//! Polling in process over real HTTP on loopback: the poll engine against the ConnectWise
//! simulator (`poll_engine`), the generic `http` element (`http_element`), provider records kept
//! as their JSON text (`raw_records`), and limits per tenant on one host (`tenant_limits`). One
//! crate, so the suite links one binary for them.

mod support;

#[path = "polling/http_element.rs"]
mod http_element;
#[path = "polling/poll_engine.rs"]
mod poll_engine;
#[path = "polling/raw_records.rs"]
mod raw_records;
#[path = "polling/reconcile.rs"]
mod reconcile;
#[path = "polling/tenant_limits.rs"]
mod tenant_limits;
