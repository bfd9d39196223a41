//! Request and response models of the orchestrator HTTP API (spec 8, Appendix B), with
//! upstream JSON field names. [`enums`] holds every Appendix A enum.

pub mod backends;
mod defaults;
pub mod deploy;
pub mod enums;
pub mod error;
pub mod infrastructure;
pub mod logs;
pub mod presets;
pub mod routing;
pub mod services;
pub mod status;
#[cfg(test)]
mod test_support;
pub mod topology;

pub use backends::*;
pub use deploy::*;
pub use enums::*;
pub use error::{ApiError, FieldError, Validate};
pub use infrastructure::*;
pub use logs::*;
pub use presets::*;
pub use routing::*;
pub use services::*;
pub use status::*;
pub use topology::*;
