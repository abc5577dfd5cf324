//! Metrics an operator expects next to the request metrics (issue 11):
//!
//! - `process_*` (CPU seconds, resident and virtual memory, open and max
//!   file descriptors, start time, threads) from the `prometheus` crate's
//!   process collector (Linux `/proc`);
//! - `extregd_build_info{version,rustc}` = 1;
//! - `backend_request_duration_seconds{backend,operation}`: how long each
//!   backend call took (`list`, `versions`; `fetch` until the body starts);
//! - `artifact_bytes_served_total`: artifact bytes sent to clients;
//! - `backend_bytes_fetched_total{backend}`: artifact bytes read from
//!   backends.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts};

/// Backend calls cross the network: 1 ms to 60 s.
const BACKEND_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct OpsMetrics {
    pub backend_duration: HistogramVec,
    pub bytes_served: IntCounter,
    pub bytes_fetched: IntCounterVec,
}

impl OpsMetrics {
    pub fn register(r: &prometheus::Registry) -> OpsMetrics {
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
        let build = IntGaugeVec::new(
            Opts::new("extregd_build_info", "extregd build; the value is always 1"),
            &["version", "rustc"],
        )
        .expect("valid metric");
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("EXTREGD_RUSTC")])
            .set(1);
        r.register(Box::new(build)).expect("unique metric");
        let backend_duration = HistogramVec::new(
            HistogramOpts::new(
                "backend_request_duration_seconds",
                "Duration of backend calls, by backend and operation",
            )
            .buckets(BACKEND_BUCKETS.to_vec()),
            &["backend", "operation"],
        )
        .expect("valid metric");
        r.register(Box::new(backend_duration.clone()))
            .expect("unique metric");
        let bytes_served = IntCounter::new(
            "artifact_bytes_served_total",
            "Artifact bytes sent to HTTP clients",
        )
        .expect("valid metric");
        r.register(Box::new(bytes_served.clone()))
            .expect("unique metric");
        let bytes_fetched = IntCounterVec::new(
            Opts::new(
                "backend_bytes_fetched_total",
                "Artifact bytes read from backends, by backend",
            ),
            &["backend"],
        )
        .expect("valid metric");
        r.register(Box::new(bytes_fetched.clone()))
            .expect("unique metric");
        OpsMetrics {
            backend_duration,
            bytes_served,
            bytes_fetched,
        }
    }

    /// Counts the bytes of `stream` into `artifact_bytes_served_total` as
    /// they are sent.
    pub fn count_served<E>(
        &self,
        stream: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    ) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static {
        count_bytes(stream, self.bytes_served.clone())
    }
}

pub fn count_bytes<E>(
    stream: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    counter: IntCounter,
) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static {
    stream.inspect(move |item| {
        if let Ok(b) = item {
            counter.inc_by(b.len() as u64);
        }
    })
}
