//! Writing the Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then
//! one sample per line, label values escaped.

use std::fmt::Write;

/// A page of metrics being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// The kind of a metric family (its `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (its name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts the family `name` of `kind`, described by `help`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample of `name` with `labels` (name, value) and `value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{label}=\"{v}\"");
            }
            self.text.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.text, " {value}");
        } else if value.is_nan() {
            self.text.push_str(" NaN\n");
        } else if value > 0.0 {
            self.text.push_str(" +Inf\n");
        } else {
            self.text.push_str(" -Inf\n");
        }
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// The page.
    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_families_typed() {
        let mut page = Exposition::new();
        page.family("relup_x_total", Kind::Counter, "a \"test\"\ncounter")
            .sample("relup_x_total", &[("sup", "a\"b\\c\nd")], 3.0)
            .single("relup_y", Kind::Gauge, "y", 0.5);
        assert_eq!(
            page.finish(),
            "# HELP relup_x_total a \"test\"\\ncounter\n# TYPE relup_x_total counter\n\
             relup_x_total{sup=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP relup_y y\n# TYPE relup_y gauge\nrelup_y 0.5\n"
        );
    }
}
