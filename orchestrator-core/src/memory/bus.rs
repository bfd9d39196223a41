//! In-memory `EventBus` over tokio broadcast channels.
