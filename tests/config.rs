//! Instance files and settings as the daemon and `pollerd check` read them: loading into specs
//! (`config_load`), `pollerd check` over the broken corpus (`check_cli`) and every shipped example
//! (`examples`). One crate, so the suite links one binary for them.

#[path = "config/check_cli.rs"]
mod check_cli;
#[path = "config/config_load.rs"]
mod config_load;
#[path = "config/examples.rs"]
mod examples;
#[path = "config/polling_settings.rs"]
mod polling_settings;
#[path = "config/store_settings.rs"]
mod store_settings;
