//! The Prometheus exposition: at scrape time, each counter summed across the workers'
//! published values (relaxed loads: a scrape may see one worker's batch a moment before
//! another's, never a torn value), the gauges, the router's connection states and the lookup
//! latency histogram.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::stats::{Counter, LATENCY_BUCKETS_US, Shared};

#[derive(Debug)]
pub struct ProxyCollector {
    pub shared: Arc<Shared>,
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
