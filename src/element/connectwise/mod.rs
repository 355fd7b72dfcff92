//! The connectwisecrmrest element.
