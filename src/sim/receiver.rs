//! Webhook receiver for tests: records every request, answers as told.
