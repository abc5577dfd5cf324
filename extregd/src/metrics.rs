//! Prometheus metrics in the classic text exposition format, encoded by the
//! `prometheus` crate (checked by `promtool check metrics` in the tests).
//! Names follow the seed (`http_requests_total`,
//! `http_request_duration_seconds`, `cache_hits_total`, `cache_misses_total`,
//! except that the seed's `extensions_total` gauge is `extensions{type}`:
//! Prometheus reserves `_total` for counters and promtool rejects a gauge
//! named so); request metrics are labelled by route template,
//! never by raw path, so the label set stays bounded whatever clients send.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub type Counter = IntCounter;

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub cache_hits: IntCounterVec,
    pub cache_misses: IntCounterVec,
    pub extensions: IntGaugeVec,
    pub backend_requests: IntCounterVec,
    /// Repositories skipped by a listing because they failed.
    pub skipped_repositories: IntCounterVec,
    pub artifact_entries: IntGauge,
    pub artifact_bytes: IntGauge,
    /// Operator metrics (issue 11): see [`crate::metrics_ops`].
    pub ops: crate::metrics_ops::OpsMetrics,
    /// Connections being served, by listener (`http`, `socket`).
    pub connections_open: IntGaugeVec,
    /// Connections turned away at the limit (HTTP: answered 503).
    pub connections_rejected: IntCounterVec,
    /// Connections closed by a timeout, by listener and kind (`idle`:
    /// no request within the idle timeout; `write`: the client stopped
    /// reading; `shutdown`: still open at the shutdown deadline).
    pub connections_timed_out: IntCounterVec,
    /// Failed `accept` calls, by listener (EMFILE and the like).
    pub accept_errors: IntCounterVec,
    /// Background refreshes of the metadata caches, by cache and outcome.
    pub cache_refreshes: IntCounterVec,
    /// Answers served from an entry marked stale, by cache.
    pub cache_stale_served: IntCounterVec,
    /// 1 while the last refresh from a backend failed, by backend.
    pub backend_refresh_failing: IntGaugeVec,
    /// Push invalidations received, by sender (`registry`, `gitea`) and
    /// outcome (`refreshed`, `ignored`, `refused`).
    pub webhooks: IntCounterVec,
}

const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request duration")
                .buckets(BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        r.register(Box::new(http_duration.clone()))
            .expect("unique metric");
        Metrics {
            http_requests: counter_vec(
                &r,
                "http_requests_total",
                "Total HTTP requests",
                &["method", "route", "status"],
            ),
            http_duration,
            cache_hits: counter_vec(&r, "cache_hits_total", "Total cache hits", &["cache"]),
            cache_misses: counter_vec(&r, "cache_misses_total", "Total cache misses", &["cache"]),
            extensions: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "extensions",
                        "Extensions known across all backends, by type",
                    ),
                    &["type"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            backend_requests: counter_vec(
                &r,
                "backend_requests_total",
                "Calls made to backends, by backend, operation and outcome",
                &["backend", "operation", "outcome"],
            ),
            skipped_repositories: counter_vec(
                &r,
                "backend_skipped_repositories_total",
                "Repositories skipped by a backend listing because they failed",
                &["backend"],
            ),
            artifact_entries: gauge(
                &r,
                "artifact_cache_entries",
                "Artifacts held in the on-disk cache",
            ),
            artifact_bytes: gauge(
                &r,
                "artifact_cache_bytes",
                "Bytes held in the on-disk artifact cache",
            ),
            ops: crate::metrics_ops::OpsMetrics::register(&r),
            connections_open: {
                let g = IntGaugeVec::new(
                    Opts::new("connections_open", "Connections being served, by listener"),
                    &["listener"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            connections_rejected: counter_vec(
                &r,
                "connections_rejected_total",
                "Connections turned away at the connection limit, by listener",
                &["listener"],
            ),
            connections_timed_out: counter_vec(
                &r,
                "connections_timed_out_total",
                "Connections closed by a timeout, by listener and kind (idle, write, shutdown)",
                &["listener", "kind"],
            ),
            accept_errors: counter_vec(
                &r,
                "accept_errors_total",
                "Failed accept calls (such as EMFILE), by listener",
                &["listener"],
            ),
            cache_refreshes: counter_vec(
                &r,
                "cache_refreshes_total",
                "Background refreshes of metadata cache entries, by cache and outcome",
                &["cache", "outcome"],
            ),
            cache_stale_served: counter_vec(
                &r,
                "cache_stale_served_total",
                "Answers served from cache entries marked stale, by cache",
                &["cache"],
            ),
            backend_refresh_failing: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "backend_refresh_failing",
                        "1 while the last metadata refresh from a backend failed",
                    ),
                    &["backend"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            webhooks: counter_vec(
                &r,
                "webhook_events_total",
                "Push invalidation calls, by sender and outcome",
                &["sender", "outcome"],
            ),
            registry: r,
        }
    }

    /// The (hit, miss) counters of one cache, resolved once so a lookup
    /// costs one atomic add.
    pub fn cache_counters(&self, cache: &str) -> (Counter, Counter) {
        (
            self.cache_hits.with_label_values(&[cache]),
            self.cache_misses.with_label_values(&[cache]),
        )
    }

    pub fn backend_call(&self, backend: &str, operation: &str, ok: bool) {
        self.backend_requests
            .with_label_values(&[backend, operation, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Counts and times one backend call that started at `started`.
    pub fn backend_timed(
        &self,
        backend: &str,
        operation: &str,
        ok: bool,
        started: std::time::Instant,
    ) {
        self.backend_call(backend, operation, ok);
        self.ops
            .backend_duration
            .with_label_values(&[backend, operation])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts and times one HTTP request.
    pub fn observe_request(&self, method: &str, route: &str, status: &str, seconds: f64) {
        self.http_requests
            .with_label_values(&[method, route, status])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("writing to a Vec cannot fail");
        out
    }
}
