//! In-process tests of the handlers.
