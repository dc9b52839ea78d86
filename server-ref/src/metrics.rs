//! Prometheus metrics of the server, served as text on `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::store::PoolState;

/// All metrics of one server instance, in their own registry.
pub struct Metrics {
    registry: Registry,
    /// `possync_push_results_total{status}`: settled sales by outcome.
    pub push_results: IntCounterVec,
    /// `possync_push_sale_seconds`: time to settle one sale (database transaction included).
    pub sale_seconds: Histogram,
    /// `possync_http_requests_total{route,code}`: answered requests.
    pub http_requests: IntCounterVec,
    /// `possync_http_request_seconds{route}`: time to answer a request.
    pub http_seconds: HistogramVec,
    /// `possync_http_connections_open`: open client connections.
    pub connections_open: IntGauge,
    /// `possync_http_connections_max`: the open-connection cap in force.
    pub connections_max: IntGauge,
    /// `possync_http_limit_hits_total{limit}`: requests or connections stopped by a limit of the front
    /// (`header_timeout`, `header_too_large`, `body_timeout`, `body_too_large`, `idle_or_write_timeout`,
    /// `max_connections`, `inflight_pushes`, `push_in_flight`, `body_bytes`, `ambiguous_framing`,
    /// `malformed_request`, `accept_error`, `request_deadline`, `connection_error`).
    pub limit_hits: IntCounterVec,
    /// `possync_push_in_flight`: push requests doing database work now.
    pub pushes_in_flight: IntGauge,
    /// `possync_http_body_bytes_reading`: bytes of the body byte budget held by bodies being read,
    /// set when `/metrics` is rendered.
    pub body_bytes_reading: IntGauge,
    /// `possync_token_cache_hits_total`: requests whose token was accepted without a database lookup.
    pub token_cache_hits: prometheus::IntCounter,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    pool_max: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: metric names are static and registered once per registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let push_results = IntCounterVec::new(
            Opts::new("possync_push_results_total", "Sales settled by /sync/push, by outcome"),
            &["status"],
        )
        .expect("static metric definition");
        let sale_seconds = Histogram::with_opts(
            HistogramOpts::new("possync_push_sale_seconds", "Time to settle one sale")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .expect("static metric definition");
        let http_requests = IntCounterVec::new(
            Opts::new("possync_http_requests_total", "HTTP requests answered, by route and status code"),
            &["route", "code"],
        )
        .expect("static metric definition");
        let http_seconds = HistogramVec::new(
            HistogramOpts::new("possync_http_request_seconds", "Time to answer an HTTP request"),
            &["route"],
        )
        .expect("static metric definition");
        let connections_open =
            IntGauge::new("possync_http_connections_open", "Open client connections").expect("static");
        let connections_max =
            IntGauge::new("possync_http_connections_max", "Open-connection cap in force").expect("static");
        let limit_hits = IntCounterVec::new(
            Opts::new(
                "possync_http_limit_hits_total",
                "Requests or connections stopped by a limit of the front",
            ),
            &["limit"],
        )
        .expect("static metric definition");
        let pushes_in_flight =
            IntGauge::new("possync_push_in_flight", "Push requests doing database work now").expect("static");
        let body_bytes_reading = IntGauge::new(
            "possync_http_body_bytes_reading",
            "Bytes of the body byte budget held by push bodies being read",
        )
        .expect("static");
        let token_cache_hits = prometheus::IntCounter::new(
            "possync_token_cache_hits_total",
            "Requests whose device token was accepted without a database lookup",
        )
        .expect("static");
        let pool_connections =
            IntGauge::new("possync_db_pool_connections", "Open database connections").expect("static");
        let pool_idle =
            IntGauge::new("possync_db_pool_idle_connections", "Idle database connections").expect("static");
        let pool_max =
            IntGauge::new("possync_db_pool_max_connections", "Database pool size").expect("static");
        for c in [
            Box::new(push_results.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sale_seconds.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_seconds.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_max.clone()),
            Box::new(limit_hits.clone()),
            Box::new(pushes_in_flight.clone()),
            Box::new(body_bytes_reading.clone()),
            Box::new(token_cache_hits.clone()),
            Box::new(pool_connections.clone()),
            Box::new(pool_idle.clone()),
            Box::new(pool_max.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            push_results,
            sale_seconds,
            http_requests,
            http_seconds,
            connections_open,
            connections_max,
            limit_hits,
            pushes_in_flight,
            body_bytes_reading,
            token_cache_hits,
            pool_connections,
            pool_idle,
            pool_max,
        }
    }

    /// The Prometheus text exposition of every metric, with the pool gauges read now.
    pub fn render(&self, pool: PoolState) -> String {
        self.pool_connections.set(i64::from(pool.connections));
        self.pool_idle.set(i64::from(pool.idle));
        self.pool_max.set(i64::from(pool.max));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!(error:% = e; "metrics encoding failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
