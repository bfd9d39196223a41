//! Wire checks shared by the API model tests: JSON round trips and the field a
//! validation error names.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses `input` as `T`, writes it back, and asserts the result equals `expected`.
/// Returns the parsed value for further checks.
pub(crate) fn round_trip<T: DeserializeOwned + Serialize>(input: Value, expected: Value) -> T {
    let parsed: T = serde_json::from_value(input.clone())
        .unwrap_or_else(|e| panic!("parse failed: {e}\ninput: {input}"));
    let written = serde_json::to_value(&parsed).expect("serialise");
    assert_eq!(written, expected, "written JSON differs");
    // Writing is a fixed point: what we write parses back to the same JSON.
    let again: T = serde_json::from_value(written.clone()).expect("re-parse");
    assert_eq!(serde_json::to_value(&again).expect("serialise"), written);
    parsed
}

/// Parses `input` as `T` and returns the field named by its validation error.
pub(crate) fn invalid_field<T: DeserializeOwned + super::Validate>(input: Value) -> String {
    let parsed: T = serde_json::from_value(input.clone())
        .unwrap_or_else(|e| panic!("parse failed: {e}\ninput: {input}"));
    match parsed.validate() {
        Ok(()) => panic!("expected a validation error for {input}"),
        Err(e) => e.field,
    }
}
