//! Prometheus' text exposition format, version 0.0.4: for each metric family a `# HELP` line, a
//! `# TYPE` line, then its samples, `name{label="value",...} value`, one a line.
//!
//! Written by hand: what Midge exposes is a few dozen families read from snapshots at scrape
//! time, so a registry of live metric objects (`prometheus-client`) would only copy the values
//! once more; the format is a dozen lines.

use std::fmt::{Display, Write as _};

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type (`# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts from 0 with the process); its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets: `_bucket{le=...}`, `_sum`, `_count`.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A document being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the family `name`: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the family just started (`name` has its suffix, such as `_bucket`).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"");
                escape_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single sample without labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the format asks.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Seconds as the format writes them, from microseconds (`0.0025`, `1`, `2.5`).
pub fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_its_help_type_and_samples_with_escaped_labels() {
        let mut doc = Exposition::new();
        doc.family("midge_x_total", Kind::Counter, "What x counts.\nSecond line.");
        doc.sample("midge_x_total", &[("reason", "a\"b\\c\nd"), ("qos", "1")], 7);
        doc.single("midge_y", Kind::Gauge, "Y.", 0.25);
        assert_eq!(
            doc.finish(),
            "# HELP midge_x_total What x counts.\\nSecond line.\n# TYPE midge_x_total counter\n\
             midge_x_total{reason=\"a\\\"b\\\\c\\nd\",qos=\"1\"} 7\n\
             # HELP midge_y Y.\n# TYPE midge_y gauge\nmidge_y 0.25\n"
        );
    }

    #[test]
    fn seconds_are_written_as_decimals() {
        assert_eq!(seconds(2_500).to_string(), "0.0025");
        assert_eq!(seconds(1_000_000).to_string(), "1");
        assert_eq!(seconds(100).to_string(), "0.0001");
    }
}
