//! Request checks shared by the operations endpoints: validation naming the field at
//! fault, pool names, ages such as `24h`.

use std::time::Duration;

use orchestrator_core::api::{FieldError, Validate};
use orchestrator_pools::PoolType;

use super::ServiceError;

/// Validates `request` again (the HTTP layer already did; a caller inside the process may
/// not have), naming the field at fault.
pub(super) fn validated<R: Validate>(request: &R) -> Result<(), ServiceError> {
    request.validate().map_err(ServiceError::field)
}

/// The request's `poolType` as a pool name (400 naming `poolType` when it is not one).
pub(super) fn pool_type(name: &str) -> Result<PoolType, ServiceError> {
    PoolType::new(name.trim())
        .map_err(|e| ServiceError::field(FieldError::new("poolType", e.reason)))
}

/// Parses an age such as `24h`, `90m`, `30s` or `7d` (whole numbers only); `None` for
/// anything else, so an unparsable `olderThan` falls back to the configured threshold.
pub(super) fn parse_age(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let secs_per_unit = match unit.to_ascii_lowercase() {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    n.checked_mul(secs_per_unit).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_in_whole_units_and_reject_the_rest() {
        assert_eq!(parse_age("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_age(" 90m "), Some(Duration::from_secs(5400)));
        assert_eq!(parse_age("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("30s"), Some(Duration::from_secs(30)));
        for bad in ["", "h", "1.5h", "-1h", "10", "10w", "2026-01-01T00:00:00Z"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn pool_names_are_checked_naming_the_field() {
        assert_eq!(
            pool_type("bad name!").unwrap_err().body.field.as_deref(),
            Some("poolType")
        );
    }
}
