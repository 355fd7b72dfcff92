//! Notification signatures (Elements-Webhook-Signature, Standard Webhooks).
