//! Durable state behind a small trait: watermarks, seen ids, outbox, dead letters.
