//! Async QMP clients.
