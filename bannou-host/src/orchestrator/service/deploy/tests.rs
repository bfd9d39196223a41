//! Scenario tests of the deploy group.
