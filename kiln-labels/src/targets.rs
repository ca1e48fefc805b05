//! Human-readable listing of targets, for `kiln targets`.

use std::fmt::Write;

use crate::labels::Labels;
use crate::target::Target;

/// Formats labels as `{name="value", ...}` with Prometheus string escaping.
pub fn format_labels(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// Formats one target:
///
/// ```text
/// pid 1234 series 9f3c2a1b0d4e5f60
///   final: {hostname="node-1", process="sleep", service_name="sleep"}
///   meta:  {__meta_process_comm="sleep", __meta_process_pid="1234", ...}
/// ```
///
/// A dropped target shows `final: dropped by relabeling`.
pub fn format_target(target: &Target) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "pid {} series {:016x}",
        target.pid(),
        target.series_key()
    );
    if target.is_dropped() {
        out.push_str("  final: dropped by relabeling\n");
    } else {
        let _ = writeln!(out, "  final: {}", format_labels(target.labels()));
    }
    let _ = writeln!(out, "  meta:  {}", format_labels(target.meta_labels()));
    out
}

/// Formats several targets, ordered by pid, separated by blank lines.
pub fn format_targets<'a>(targets: impl IntoIterator<Item = &'a Target>) -> String {
    let mut targets: Vec<&Target> = targets.into_iter().collect();
    targets.sort_by_key(|t| t.pid());
    targets
        .iter()
        .map(|t| format_target(t))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::labels::labels_from as set;

    #[test]
    fn escapes_values() {
        assert_eq!(
            format_labels(&set(&[("a", "x\"y\\z\nw"), ("b", "")])),
            r#"{a="x\"y\\z\nw", b=""}"#
        );
        assert_eq!(format_labels(&Labels::new()), "{}");
    }

    #[test]
    fn formats_kept_and_dropped_targets_in_pid_order() {
        let kept = Target::new(
            20,
            1,
            set(&[("__meta_process_pid", "20")]),
            Some(set(&[("service_name", "svc")])),
        );
        let dropped = Target::new(10, 1, set(&[("__meta_process_pid", "10")]), None);
        let text = format_targets([&kept, &dropped]);
        let expected = format!(
            "pid 10 series {:016x}\n  final: dropped by relabeling\n  meta:  {{__meta_process_pid=\"10\"}}\n\n\
             pid 20 series {:016x}\n  final: {{service_name=\"svc\"}}\n  meta:  {{__meta_process_pid=\"20\"}}\n",
            dropped.series_key(),
            kept.series_key()
        );
        assert_eq!(text, expected);
    }
}
