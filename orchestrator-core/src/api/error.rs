//! Request validation and the error body of the HTTP API: [`Validate`] checks a parsed
//! request, [`FieldError`] names the JSON path at fault, [`ApiError`] is the body a 4xx/5xx
//! response carries (`{"error": "...", "field": "..."}`, our addition; see D18
//! (docs/DECISIONS.md#d18)).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request field that breaks the schema or the spec, named by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// JSON path of the offending field, with upstream names: `poolType`,
    /// `topology.nodes[1].name`, `changes[0].services[2]`.
    pub field: String,
    /// What is wrong, e.g. `must not be empty`, `must be at least 1 (got 0)`.
    pub message: String,
}

impl FieldError {
    /// An error for `field` with `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error seen from an enclosing object: `name` under `topology.nodes[1]`
    /// becomes `topology.nodes[1].name`.
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if prefix.is_empty() {
            self.field
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// A request that can check itself before any work is done (D7 (docs/DECISIONS.md#d7):
/// nothing is torn down before a request is validated). Serde already enforces presence and
/// JSON types; this checks what serde cannot: non-empty strings, numeric ranges, list
/// contents.
pub trait Validate {
    /// `Ok` when the request may be executed; otherwise the first field at fault, which the
    /// HTTP layer answers with 400 and an [`ApiError`] naming it.
    fn validate(&self) -> Result<(), FieldError>;
}

/// The JSON body of an error response. Upstream sends no body; clients that expect none
/// ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Human-readable description of what went wrong (for a field error, `{field}: {message}`).
    pub error: String,
    /// JSON path of the request field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error not tied to a field.
    pub fn new(error: impl Into<String>) -> Self {
        ApiError {
            error: error.into(),
            field: None,
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError {
            error: e.to_string(),
            field: Some(e.field),
        }
    }
}

/// Parses a request body and validates it: the one call the HTTP layer makes per request.
///
/// An empty (or all-whitespace) body counts as `{}`, so endpoints whose fields are all
/// optional can be called without one. A body that does not parse gives an [`ApiError`]
/// with serde's message; when serde reports a missing field, `field` names it (nested
/// paths need the HTTP layer's help, e.g. `serde_path_to_error`).
pub fn decode_request<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let request: T = serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        ApiError {
            field: missing_field_name(&message).map(str::to_owned),
            error: format!("invalid request body: {message}"),
        }
    })?;
    request.validate()?;
    Ok(request)
}

/// The field name in serde's "missing field `name`" message.
fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

// === validation helpers shared by the request modules ===

/// `value` must contain something other than whitespace.
pub(crate) fn non_empty(field: &str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        Err(FieldError::new(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// When present, `value` must contain something other than whitespace.
pub(crate) fn opt_non_empty(field: &str, value: Option<&str>) -> Result<(), FieldError> {
    value.map_or(Ok(()), |v| non_empty(field, v))
}

/// Every entry of `values` must be non-empty; the error names the entry (`services[2]`).
pub(crate) fn each_non_empty(field: &str, values: &[String]) -> Result<(), FieldError> {
    for (i, v) in values.iter().enumerate() {
        non_empty(&format!("{field}[{i}]"), v)?;
    }
    Ok(())
}

/// `value` must be at least `min`.
pub(crate) fn at_least(field: &str, value: i64, min: i64) -> Result<(), FieldError> {
    if value < min {
        Err(FieldError::new(
            field,
            format!("must be at least {min} (got {value})"),
        ))
    } else {
        Ok(())
    }
}

/// `value` must lie in `min..=max`.
pub(crate) fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<(), FieldError> {
    if value < min || value > max {
        Err(FieldError::new(
            field,
            format!("must be between {min} and {max} (got {value})"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_join_with_dots_and_brackets() {
        let e = FieldError::new("name", "must not be empty")
            .under("nodes[1]")
            .under("topology");
        assert_eq!(e.field, "topology.nodes[1].name");
        let e = FieldError::new("[2]", "x").under("services").under("");
        assert_eq!(e.field, "services[2]");
    }

    #[test]
    fn api_error_body_names_the_field_and_omits_null() {
        let body = ApiError::from(FieldError::new("poolType", "must not be empty"));
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error": "poolType: must not be empty", "field": "poolType"})
        );
        assert_eq!(
            serde_json::to_value(ApiError::new("preset `x` not found")).unwrap(),
            serde_json::json!({"error": "preset `x` not found"})
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default = "probe_default")]
        pool_type: String,
    }

    fn probe_default() -> String {
        "default".into()
    }

    impl Validate for Probe {
        fn validate(&self) -> Result<(), FieldError> {
            non_empty("poolType", &self.pool_type)
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Required {
        app_name: String,
    }

    impl Validate for Required {
        fn validate(&self) -> Result<(), FieldError> {
            Ok(())
        }
    }

    #[test]
    fn decode_request_parses_validates_and_names_fields() {
        assert_eq!(decode_request::<Probe>(b"").unwrap().pool_type, "default");
        assert_eq!(
            decode_request::<Probe>(b" \n").unwrap().pool_type,
            "default"
        );
        assert_eq!(
            decode_request::<Probe>(br#"{"poolType": "p"}"#)
                .unwrap()
                .pool_type,
            "p"
        );
        let err = decode_request::<Probe>(br#"{"poolType": ""}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("poolType"));
        let ok = decode_request::<Required>(br#"{"appName": "a"}"#).unwrap();
        assert_eq!(ok.app_name, "a");
        let err = decode_request::<Required>(b"{}").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("appName"));
        assert!(
            err.error
                .starts_with("invalid request body: missing field `appName`")
        );
        let err = decode_request::<Probe>(b"{not json").unwrap_err();
        assert_eq!(err.field, None);
        assert!(
            err.error.starts_with("invalid request body"),
            "{}",
            err.error
        );
    }

    #[test]
    fn helpers_reject_blank_and_out_of_range() {
        assert!(non_empty("a", " \t").is_err());
        assert!(non_empty("a", "x").is_ok());
        assert!(opt_non_empty("a", None).is_ok());
        assert_eq!(
            each_non_empty("services", &["a".into(), "".into()])
                .unwrap_err()
                .field,
            "services[1]"
        );
        assert_eq!(
            at_least("replicas", 0, 1).unwrap_err().message,
            "must be at least 1 (got 0)"
        );
        assert!(in_range("http", 65536, 1, 65535).is_err());
        assert!(in_range("http", 65535, 1, 65535).is_ok());
    }
}
