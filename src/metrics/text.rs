//! The Prometheus text exposition format (version 0.0.4), written directly: one `# HELP` and
//! one `# TYPE` per family, then its samples. Counters' family names end in `_total`, label
//! values are escaped, histograms end with a `+Inf` bucket. This is the format Prometheus,
//! `promtool check metrics` and every scraper read.

use std::fmt::{Display, Write};

/// The `Content-Type` of [`Text`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Default)]
pub struct Text {
    out: String,
    /// The family being written, for its samples' names.
    name: String,
}

impl Text {
    /// Starts a family. A counter's name gets its `_total` suffix here.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        self.name.clear();
        self.name.push_str(name);
        if kind == Kind::Counter {
            self.name.push_str("_total");
        }
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {} {help}", self.name);
        let _ = writeln!(self.out, "# TYPE {} {kind}", self.name);
        self
    }

    /// A sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.write_sample("", labels, value)
    }

    /// A histogram: its buckets' upper bounds and (not cumulative) counts, the last count for
    /// `+Inf`, and the sum of the observations.
    pub fn histogram(&mut self, bounds: &[f64], counts: &[u64], sum: f64) -> &mut Self {
        let mut cumulative = 0;
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            let le = bounds.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            self.write_sample("_bucket", &[("le", &le)], cumulative);
        }
        self.write_sample("_sum", &[], sum);
        self.write_sample("_count", &[], cumulative)
    }

    fn write_sample(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        let _ = write!(self.out, "{}{suffix}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"");
                for ch in value.chars() {
                    match ch {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        _ => self.out.push(ch),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut t = Text::default();
        t.family("x_packets", "Datagrams", Kind::Counter)
            .sample(&[("direction", "up")], 3)
            .family("x_up", "a \\ b\nc", Kind::Gauge)
            .sample(&[("v", "q\"\\\n")], 1.5)
            .family("x_seconds", "Latency", Kind::Histogram)
            .histogram(&[0.25, 1.0], &[1, 2, 3], 4.5);
        assert_eq!(
            t.finish(),
            "# HELP x_packets_total Datagrams\n# TYPE x_packets_total counter\n\
             x_packets_total{direction=\"up\"} 3\n\
             # HELP x_up a \\\\ b\\nc\n# TYPE x_up gauge\nx_up{v=\"q\\\"\\\\\\n\"} 1.5\n\
             # HELP x_seconds Latency\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{le=\"0.25\"} 1\nx_seconds_bucket{le=\"1\"} 3\n\
             x_seconds_bucket{le=\"+Inf\"} 6\nx_seconds_sum 4.5\nx_seconds_count 6\n"
        );
    }
}
