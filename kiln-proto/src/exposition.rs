//! The Prometheus text exposition format (version 0.0.4), written one way for the agent's
//! and the server's `/metrics`: each metric family is declared once as data ([`Family`]:
//! name, type, help, label names), and [`Exposition`] writes its header and samples,
//! escaping label values so that a value with a quote, backslash or newline cannot break
//! the line it is on.

use std::fmt::{Display, Write as _};

/// The content type of the text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family. Its samples give values for `labels`, in that order.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

impl Family {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self::new(name, Kind::Counter, help, &[])
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self::new(name, Kind::Gauge, help, &[])
    }

    pub const fn new(
        name: &'static str,
        kind: Kind,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            kind,
            help,
            labels,
        }
    }
}

/// A `/metrics` page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self {
            out: String::with_capacity(8192),
        }
    }

    /// The `# HELP` and `# TYPE` lines of `family`; write them once, before its samples.
    pub fn family(&mut self, family: &Family) -> &mut Self {
        let _ = writeln!(
            self.out,
            "# HELP {} {}\n# TYPE {} {}",
            family.name,
            escape_help(family.help),
            family.name,
            family.kind.as_str()
        );
        self
    }

    /// One sample of `family`, with a value for each of its labels, in order.
    pub fn sample(&mut self, family: &Family, values: &[&str], value: impl Display) -> &mut Self {
        debug_assert_eq!(
            family.labels.len(),
            values.len(),
            "{}: label values do not match the label names",
            family.name
        );
        self.out.push_str(family.name);
        self.labels(family.labels.iter().copied().zip(values.iter().copied()));
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family without labels: its header and its one sample.
    pub fn single(&mut self, family: &Family, value: impl Display) -> &mut Self {
        self.family(family).sample(family, &[], value)
    }

    /// A sample of a histogram's series (`suffix` `_bucket`, `_sum` or `_count`), with the
    /// family's label values and, for buckets, `le`.
    pub fn histogram_sample(
        &mut self,
        family: &Family,
        suffix: &str,
        values: &[&str],
        le: Option<&str>,
        value: impl Display,
    ) -> &mut Self {
        self.out.push_str(family.name);
        self.out.push_str(suffix);
        self.labels(
            family
                .labels
                .iter()
                .copied()
                .zip(values.iter().copied())
                .chain(le.map(|le| ("le", le))),
        );
        let _ = writeln!(self.out, " {value}");
        self
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn labels<'a>(&mut self, mut pairs: impl Iterator<Item = (&'a str, &'a str)>) {
        let Some(first) = pairs.next() else {
            return;
        };
        self.out.push('{');
        for (i, (name, value)) in std::iter::once(first).chain(pairs).enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_label_value(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Label values escape `\`, `"` and newlines.
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

/// Help text escapes `\` and newlines.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUESTS: Family = Family::new(
        "kiln_requests_total",
        Kind::Counter,
        "Requests, by path.",
        &["path", "code"],
    );

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new();
        e.family(&REQUESTS)
            .sample(&REQUESTS, &["/a\"b\\c\nd", "200"], 3);
        assert_eq!(
            e.finish(),
            "# HELP kiln_requests_total Requests, by path.\n\
             # TYPE kiln_requests_total counter\n\
             kiln_requests_total{path=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 3\n"
        );
    }

    #[test]
    fn families_without_labels_and_histograms() {
        const UP: Family = Family::gauge("kiln_up", "1 while up.\nSecond line \\ here.");
        const LATENCY: Family = Family::new(
            "kiln_query_duration_seconds",
            Kind::Histogram,
            "Latency.",
            &["endpoint"],
        );
        let mut e = Exposition::new();
        e.single(&UP, 1).family(&LATENCY);
        e.histogram_sample(&LATENCY, "_bucket", &["render"], Some("0.5"), 2)
            .histogram_sample(&LATENCY, "_sum", &["render"], None, 0.25);
        assert_eq!(
            e.finish(),
            "# HELP kiln_up 1 while up.\\nSecond line \\\\ here.\n\
             # TYPE kiln_up gauge\n\
             kiln_up 1\n\
             # HELP kiln_query_duration_seconds Latency.\n\
             # TYPE kiln_query_duration_seconds histogram\n\
             kiln_query_duration_seconds_bucket{endpoint=\"render\",le=\"0.5\"} 2\n\
             kiln_query_duration_seconds_sum{endpoint=\"render\"} 0.25\n"
        );
    }
}
