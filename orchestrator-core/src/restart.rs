//! Should-restart policy (spec 12.3 with the per-service recommendation) and restart outcome texts (spec 15).
