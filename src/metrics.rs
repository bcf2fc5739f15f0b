//! `/metrics`, `/healthz` and `/readyz` on a thread of their own, never a worker's.
//!
//! The exposition is prometheus-client's text encoder over a collector that, at scrape time,
//! sums each counter across the workers' published values (relaxed loads: a scrape may see one
//! worker's batch a moment before another's, never a torn value). HTTP is hyper's, on a
//! current-thread tokio runtime that lives in the metrics thread and nowhere else.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tracing::warn;

use crate::ratelimit::RateLimited;
use crate::stats::{Counter, LATENCY_BUCKETS_US, Shared};

#[derive(Debug)]
struct ProxyCollector {
    shared: Arc<Shared>,
}

impl Collector for ProxyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Counters of one family are declared next to each other in `stats`.
        for family in Counter::ALL.chunk_by(|a, b| a.family().0 == b.family().0) {
            let (name, _) = family[0].family();
            let probe = ConstCounter::new(0u64);
            let mut metric =
                encoder.encode_descriptor(name, family[0].help(), None, probe.metric_type())?;
            match family {
                [single] if single.family().1.is_none() => {
                    ConstCounter::new(self.shared.total(*single)).encode(metric)?
                }
                _ => {
                    for &counter in family {
                        let label = counter.family().1.unwrap_or(("", ""));
                        ConstCounter::new(self.shared.total(counter))
                            .encode(metric.encode_family(&[label])?)?;
                    }
                }
            }
        }
        let gauges = [
            (
                "ringgate_sessions",
                "Sessions holding a slot, on all workers",
                self.shared.sessions() as i64,
            ),
            (
                "ringgate_workers_ready",
                "Workers whose receive is armed",
                self.shared.armed.load(std::sync::atomic::Ordering::Relaxed) as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if !self.shared.links.is_empty() {
            self.encode_links(&mut encoder)?;
        }
        if self.shared.router == "redis" {
            self.encode_lookup_latency(&mut encoder)?;
        }
        Ok(())
    }
}

impl ProxyCollector {
    /// Per-worker state of the router's connections (`ringgate_redis_up` for Redis).
    fn encode_links(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let probe = ConstGauge::new(0i64);
        let name = format!("ringgate_{}_up", self.shared.router);
        let mut up = encoder.encode_descriptor(
            &name,
            "Whether a worker's connection to its route source has finished its handshake",
            None,
            probe.metric_type(),
        )?;
        for (worker, stats) in self.shared.stats.iter().enumerate() {
            let worker = worker.to_string();
            for (link, connection) in self.shared.links.iter().enumerate() {
                let labels = [("worker", worker.as_str()), ("connection", *connection)];
                ConstGauge::new(i64::from(stats.link_up(link)))
                    .encode(up.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// The Redis lookup latency histogram.
    fn encode_lookup_latency(
        &self,
        encoder: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let mut buckets = [0u64; LATENCY_BUCKETS_US.len() + 1];
        let mut sum_us = 0u64;
        for stats in self.shared.stats.iter() {
            let (counts, sum) = stats.latency();
            for (total, n) in buckets.iter_mut().zip(counts) {
                *total += n;
            }
            sum_us += sum;
        }
        let bounds = LATENCY_BUCKETS_US
            .iter()
            .map(|&us| us as f64 / 1e6)
            .chain(std::iter::once(f64::MAX));
        let classic: Vec<(f64, u64)> = bounds.zip(buckets).collect();
        let metric = encoder.encode_descriptor(
            "ringgate_redis_lookup_duration_seconds",
            "Time from sending a GET of the backend key to its reply",
            None,
            prometheus_client::metrics::MetricType::Histogram,
        )?;
        let mut metric = metric;
        metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum_us as f64 / 1e6,
            buckets.iter().sum(),
            &classic,
            None,
        )
    }
}

pub struct MetricsServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves from a thread of its own (a current-thread tokio runtime that
    /// only ever runs the HTTP side).
    pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<MetricsServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProxyCollector {
            shared: Arc::clone(&shared),
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ringgate-metrics".into())
            .spawn(move || {
                let state = Arc::new((registry, shared));
                runtime.block_on(serve(listener, state, stopped));
            })?;
        Ok(MetricsServer {
            stop: Some(stop),
            thread: Some(thread),
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type State = Arc<(Registry, Arc<Shared>)>;

/// Accepts until told to stop. An accept error (EMFILE when sessions hold every descriptor,
/// ECONNABORTED, ...) is logged at most once a second and retried after a pause: the
/// endpoint must outlive the condition it is there to report.
async fn serve(
    listener: std::net::TcpListener,
    state: State,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => return warn!(error = %e, "metrics listener unusable"),
    };
    let mut warnings = RateLimited::default();
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if let Some(suppressed) = warnings.check() {
                    warn!(error = %e, suppressed, "metrics endpoint cannot accept; retrying");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, std::convert::Infallible>(respond(&request, &state)) }
            });
            // A client that hangs up mid-request is not ringgate's problem.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(request: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let (registry, shared) = (&state.0, &state.1);
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding failed\n".to_owned(),
                ),
            }
        }
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if shared.is_ready() => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
