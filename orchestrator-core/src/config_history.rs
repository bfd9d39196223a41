//! Versioned deployment configuration: history with retention, rollback, changed keys and stable marks (spec 11).
