//! Request and response models of the orchestrator HTTP API (spec 8, Appendix B), with
//! upstream JSON field names. [`enums`] holds every Appendix A enum.

mod defaults;
pub mod enums;
pub mod error;
#[cfg(test)]
mod test_support;
pub mod topology;

pub use enums::*;
pub use error::{ApiError, FieldError, Validate};
pub use topology::*;
