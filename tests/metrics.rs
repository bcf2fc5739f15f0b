//! `/metrics` read by independent implementations: `promtool check metrics` (Prometheus's own
//! linter; Debian's `prometheus` package, which scripts/test installs) and a strict parser of
//! the text format (`openmetrics-parser`), never only by our own code.

mod util;

use std::process::Command;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricNumber, MetricsExposition, PrometheusType, PrometheusValue};
use util::*;

/// An exposition with every family filled in: Redis routing (its connection states and lookup
/// histogram), sessions on two backends, drops.
fn busy_exposition() -> String {
    let redis = RedisServer::start();
    let a = Backend::start(LOCAL4, true);
    let b = Backend::start(LOCAL4, true);
    let mut config = redis_config(redis.addr());
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    config.workers = 2;
    let proxy = start(config);
    wait_ready(&proxy);
    for (i, backend) in [&a, &b].into_iter().enumerate() {
        redis.set(BACKEND_KEY, &backend.addr.to_string());
        let client = player(i);
        assert_eq!(round_trip(&client, &proxy, b"hello"), b"hello");
    }
    let body = http_get(proxy.metrics_addr().unwrap(), "/metrics").1;
    proxy.shutdown().unwrap();
    body
}

#[test]
fn promtool_finds_nothing_to_complain_about() {
    util::promtool_check(&busy_exposition());
}

fn family<'a>(
    e: &'a MetricsExposition<PrometheusType, PrometheusValue>,
    name: &str,
) -> &'a openmetrics_parser::MetricFamily<PrometheusType, PrometheusValue> {
    e.families
        .get(name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

fn number(v: &PrometheusValue) -> f64 {
    match v {
        PrometheusValue::Counter(c) => as_f64(&c.value),
        PrometheusValue::Gauge(g) => as_f64(g),
        PrometheusValue::Unknown(u) => as_f64(u),
        other => panic!("not a number: {other:?}"),
    }
}

fn as_f64(n: &MetricNumber) -> f64 {
    match n {
        MetricNumber::Float(f) => *f,
        MetricNumber::Int(i) => *i as f64,
    }
}

#[test]
fn a_strict_parser_reads_every_family() {
    let body = busy_exposition();
    let e = parse_prometheus(&body).unwrap_or_else(|err| panic!("{err:?}\n{body}"));

    let info = family(&e, "ringgate_build_info");
    let labels = info.get_label_names();
    assert!(labels.iter().any(|l| l == "version") && labels.iter().any(|l| l == "commit"));

    for name in [
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        let f = family(&e, name);
        let value = number(&f.iter_samples().next().unwrap().value);
        assert!(value >= 0.0, "{name} = {value}");
    }
    assert!(
        number(
            &family(&e, "process_open_fds")
                .iter_samples()
                .next()
                .unwrap()
                .value
        ) > 3.0
    );

    // One session on each of the two backends.
    let sessions = family(&e, "ringgate_backend_sessions");
    let per_backend: Vec<f64> = sessions.iter_samples().map(|s| number(&s.value)).collect();
    assert_eq!(per_backend, [1.0, 1.0]);
    let packets = family(&e, "ringgate_backend_packets_total");
    assert_eq!(
        packets.iter_samples().count(),
        4,
        "two backends, two directions"
    );

    // The histogram ends with +Inf, and its count is that bucket's.
    let latency = family(&e, "ringgate_redis_lookup_duration_seconds");
    let sample = latency.iter_samples().next().unwrap();
    let PrometheusValue::Histogram(h) = &sample.value else {
        panic!("not a histogram: {:?}", sample.value)
    };
    let last = h.buckets.last().unwrap();
    assert!(last.upper_bound.is_infinite());
    assert_eq!(Some(as_f64(&last.count)), h.count.map(|c| c as f64));
    assert_eq!(h.count, Some(2), "one lookup per new client");

    // Every counter family is declared once, with _total.
    let drops = family(&e, "ringgate_drops_total");
    assert!(drops.iter_samples().count() >= 10);
    assert!(!e.families.contains_key("ringgate_drops"));
}

#[test]
fn the_example_alerts_are_valid_rules() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
        .expect("promtool must be installed (scripts/test does)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every metric the rules read is one ringgate exports.
    let body = busy_exposition();
    let text = std::fs::read_to_string(rules).unwrap();
    for metric in ["ringgate_drops_total", "ringgate_redis_up"] {
        assert!(text.contains(metric));
        assert!(body.contains(&format!("# TYPE {metric} ")), "{metric}");
    }
}
