//! OpenTelemetry traces: the host's `tracing` spans exported over OTLP/HTTP, and the W3C
//! `traceparent` that joins a node's work to its caller's trace (docs/DECISIONS.md#d34).
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set: then [`init`] builds the layer that `serve` and `up` add to their subscriber. The
//! OpenTelemetry SDK reads the standard variables itself (endpoint, headers, timeout,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_BSP_*`). Invariants: nothing here blocks a request (spans go through the SDK's
//! bounded batch queue, exported on its own thread); spans of a failed export, and spans
//! that find the queue full, are dropped and counted in [`spans_dropped`]; with tracing off
//! every function here is a cheap no-op.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use prometheus_client::metrics::counter::Counter;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The variable that turns tracing on (the OTLP base URL; `/v1/traces` is appended).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The traces-only endpoint variable (used as is), which also turns tracing on.
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The protocol variables: `http/protobuf` (the default) and `http/json` are supported.
pub const PROTOCOL_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];
/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "bannou-host";
/// The W3C Trace Context header (and the bus events' field of the same name).
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Spans lost because their export failed (collector down, refused, timed out) or because
/// the batch queue was full when they ended: one process-wide counter, registered in every metrics registry of the process as
/// `bannou_orchestrator_trace_spans_dropped_total`.
pub fn spans_dropped() -> Counter {
    static DROPPED: OnceLock<Counter> = OnceLock::new();
    DROPPED.get_or_init(Counter::default).clone()
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// A protocol this build does not export.
    #[error(
        "{var}={value}: unsupported OTLP protocol (this build exports http/protobuf or http/json)"
    )]
    Protocol {
        /// The variable at fault.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The exporter could not be built (a malformed endpoint or header).
    #[error("building the OTLP trace exporter: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// The tracer provider of the process; flushes and shuts down when dropped (or at
/// [`TracesGuard::shutdown`]). Keep it alive for as long as the process serves.
#[derive(Debug, Default)]
pub struct TracesGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracesGuard {
    /// Exports what is queued, then stops the exporter. Blocks (up to the SDK's export
    /// timeout): call it once the runtime has stopped serving.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take() {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown() {
                eprintln!("traces: shutting down the exporter: {e}");
            }
        }
    }
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The protocol asked for by the environment (`None`: the default, http/protobuf).
fn protocol_from(
    env: impl Fn(&str) -> Option<String>,
) -> Result<opentelemetry_otlp::Protocol, TracesError> {
    for var in PROTOCOL_VARS {
        if let Some(value) = env(var).filter(|v| !v.trim().is_empty()) {
            return match value.trim() {
                "http/protobuf" => Ok(opentelemetry_otlp::Protocol::HttpBinary),
                "http/json" => Ok(opentelemetry_otlp::Protocol::HttpJson),
                _ => Err(TracesError::Protocol { var, value }),
            };
        }
    }
    Ok(opentelemetry_otlp::Protocol::HttpBinary)
}

/// Whether the environment turns tracing on.
fn requested(env: &impl Fn(&str) -> Option<String>) -> bool {
    [ENDPOINT_VAR, TRACES_ENDPOINT_VAR]
        .into_iter()
        .any(|v| env(v).is_some_and(|s| !s.trim().is_empty()))
}

/// The `tracing` layer that exports spans, and the guard that flushes them on exit;
/// `None` (and a guard that does nothing) when no OTLP endpoint is set. Call it outside
/// any async runtime (the exporter builds a blocking HTTP client).
pub fn init<S>() -> Result<(Option<impl tracing_subscriber::Layer<S>>, TracesGuard), TracesError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::Layer as _;

    let env = |var: &str| std::env::var(var).ok();
    if !requested(&env) {
        return Ok((None, TracesGuard::default()));
    }
    let protocol = protocol_from(env)?;
    orchestrator_backends::http::install_crypto_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(TracesError::Exporter)?;
    let queue = QueueBound::from_env(&env);
    let exporter = CountingExporter {
        inner: exporter,
        dropped: spans_dropped(),
        queued: queue.queued.clone(),
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    // The batch processor reads `OTEL_BSP_*` (its queue size set to the bound's, which
    // it then never reaches); the provider's default configuration reads
    // `OTEL_TRACES_SAMPLER` (parent-based always-on when unset).
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(queue.max)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BoundedProcessor {
            inner: batch,
            queue,
            dropped: spans_dropped(),
        })
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("bannou-host");
    ENABLED.store(true, Ordering::Relaxed);
    // Spans at info and above, plus the HTTP layer's request span (debug, so that the
    // console's default filter leaves it out) and its events.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("tower_http::trace", tracing::Level::DEBUG)
        .with_target(HTTP_SPAN_TARGET, tracing::Level::DEBUG);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter);
    Ok((
        Some(layer),
        TracesGuard {
            provider: Some(provider),
        },
    ))
}

/// The bound of the batch queue: spans ended and not yet handed to the exporter. The SDK's
/// batch processor drops a span that finds its queue full and only logs the first one, so
/// [`BoundedProcessor`] keeps the count itself and drops (and counts) at the bound before
/// the SDK's queue of the same size can fill: a span leaves the SDK's queue before the
/// exporter receives it, so `queued` is never below the SDK queue's length.
#[derive(Debug, Clone)]
struct QueueBound {
    /// Spans accepted by [`BoundedProcessor::on_end`] and not yet given to an export.
    queued: Arc<AtomicUsize>,
    /// `OTEL_BSP_MAX_QUEUE_SIZE` (the SDK's default, 2048, when unset or unreadable; at
    /// least 1).
    max: usize,
}

impl QueueBound {
    /// The bound `OTEL_BSP_MAX_QUEUE_SIZE` asks for, read as the SDK reads it.
    fn from_env(env: &impl Fn(&str) -> Option<String>) -> Self {
        let max = env(opentelemetry_sdk::trace::OTEL_BSP_MAX_QUEUE_SIZE)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(opentelemetry_sdk::trace::OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT)
            .max(1);
        Self {
            queued: Arc::default(),
            max,
        }
    }

    /// Takes a place in the queue; `false` when it is full.
    fn admit(&self) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < self.max).then_some(q + 1)
            })
            .is_ok()
    }

    /// Gives back the places of `spans` handed to the exporter.
    fn release(queued: &AtomicUsize, spans: usize) {
        let _ = queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
            Some(q.saturating_sub(spans))
        });
    }
}

/// The SDK's batch processor behind a [`QueueBound`]: a span that finds the queue full is
/// dropped here and counted in `trace_spans_dropped_total`.
#[derive(Debug)]
struct BoundedProcessor {
    inner: BatchSpanProcessor,
    queue: QueueBound,
    dropped: Counter,
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.admit() {
            self.inner.on_end(span);
        } else {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting the spans of every failed export in
/// `trace_spans_dropped_total` (the SDK drops them: it does not retry), and giving back
/// their places in the [`QueueBound`] as it receives them.
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    dropped: Counter,
    queued: Arc<AtomicUsize>,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        QueueBound::release(&self.queued, batch.len());
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        if result.is_err() {
            self.dropped.inc_by(spans);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

// === propagation ===

/// The `traceparent` of the current span (`None` with tracing off or outside any
/// sampled span): what a mesh call's header and a bus event carry.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `traceparent` (a W3C header value) the parent of `span`; a missing or
/// malformed one leaves `span` a root. No-op with tracing off.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent.filter(|_| enabled()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if opentelemetry::trace::TraceContextExt::span(&cx)
        .span_context()
        .is_valid()
    {
        let _ = span.set_parent(cx);
    }
}

/// The target of [`http_span`]'s spans.
const HTTP_SPAN_TARGET: &str = "bannou_host::http";

/// The span of one HTTP request (the root of its trace, or the child of the caller's
/// `traceparent` header): named `METHOD /path` in the trace, debug level in the logs as
/// `tower-http`'s default span is. Inside another request span (the control plane's API
/// router is nested in its node's router) there is no second one.
pub fn http_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let outer = tracing::Span::current();
    if outer
        .metadata()
        .is_some_and(|m| m.target() == HTTP_SPAN_TARGET)
    {
        return tracing::Span::none();
    }
    let span = tracing::debug_span!(
        target: HTTP_SPAN_TARGET,
        "request",
        method = %request.method(),
        uri = %request.uri(),
        otel.name = format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
    );
    if enabled() {
        set_parent(
            &span,
            request
                .headers()
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
        );
    }
    span
}

/// What [`http_layer`] answers.
pub type HttpLayer = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&axum::http::Request<axum::body::Body>) -> tracing::Span,
>;

/// `tower-http`'s request tracing with [`http_span`] as each request's span.
pub fn http_layer() -> HttpLayer {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(http_span::<axum::body::Body>)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_queue_bound_admits_up_to_its_size_and_frees_what_the_exporter_receives() {
        let bound = QueueBound::from_env(&env_of(&[("OTEL_BSP_MAX_QUEUE_SIZE", "2")]));
        assert!(bound.admit());
        assert!(bound.admit());
        assert!(!bound.admit(), "a third span finds the queue full");
        QueueBound::release(&bound.queued, 1);
        assert!(bound.admit());
        assert!(!bound.admit());
        // More given back than taken never wraps around.
        QueueBound::release(&bound.queued, 5);
        assert_eq!(bound.queued.load(Ordering::Relaxed), 0);
        let default = QueueBound::from_env(&env_of(&[("OTEL_BSP_MAX_QUEUE_SIZE", "x")]));
        assert_eq!(default.max, 2048);
        assert_eq!(
            QueueBound::from_env(&env_of(&[("OTEL_BSP_MAX_QUEUE_SIZE", "0")])).max,
            1
        );
    }

    #[test]
    fn only_an_endpoint_turns_tracing_on() {
        assert!(!requested(&env_of(&[])));
        assert!(!requested(&env_of(&[(ENDPOINT_VAR, " ")])));
        assert!(!requested(&env_of(&[("OTEL_SERVICE_NAME", "x")])));
        assert!(requested(&env_of(&[(
            ENDPOINT_VAR,
            "http://127.0.0.1:4318"
        )])));
        assert!(requested(&env_of(&[(
            TRACES_ENDPOINT_VAR,
            "http://127.0.0.1:4318/v1/traces"
        )])));
    }

    #[test]
    fn the_protocol_defaults_to_protobuf_and_names_the_variable_it_refuses() {
        use opentelemetry_otlp::Protocol;
        assert_eq!(protocol_from(env_of(&[])).unwrap(), Protocol::HttpBinary);
        assert_eq!(
            protocol_from(env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])).unwrap(),
            Protocol::HttpJson
        );
        // The traces-only variable wins over the general one.
        assert_eq!(
            protocol_from(env_of(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ]))
            .unwrap(),
            Protocol::HttpBinary
        );
        let e = protocol_from(env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
            "{e}"
        );
    }
}
