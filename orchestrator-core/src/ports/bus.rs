//! The `EventBus` port: fan-out publish/subscribe.
