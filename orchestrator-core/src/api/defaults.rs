//! Schema defaults as functions, for `#[serde(default = "...")]` (private to the API models).

pub(crate) const fn yes() -> bool {
    true
}

pub(crate) const fn one() -> i64 {
    1
}
