//! Request and response models of the orchestrator HTTP API (spec 8, Appendix B), with
//! upstream JSON field names. [`enums`] holds every Appendix A enum.

pub mod enums;

pub use enums::*;
