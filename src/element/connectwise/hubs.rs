//! Hub URLs (`/hubs/crm/contacts`) → native ConnectWise endpoints.
