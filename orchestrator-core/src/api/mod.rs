//! Request and response models of the orchestrator HTTP API (spec 8, Appendix B), with upstream JSON field names.
