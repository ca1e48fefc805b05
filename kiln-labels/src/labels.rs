//! Label sets, label-name validation and the stable series key.

use std::collections::BTreeMap;

/// A label set, sorted by name. Sorted order makes formatting and the
/// series key deterministic.
pub type Labels = BTreeMap<String, String>;

/// Whether `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `name` is an environment variable name this crate accepts in an
/// allow-list. It becomes part of a label name, so the same character set.
pub fn is_valid_env_name(name: &str) -> bool {
    is_valid_label_name(name)
}

/// A 64-bit key identifying a final label set. It is FNV-1a over
/// `name 0xff value 0xff` for each label in sorted order, so it is stable
/// across runs and machines (unlike `std`'s randomly seeded hasher) and two
/// label sets get the same key exactly when they are equal (barring hash
/// collisions).
pub fn series_key(labels: &Labels) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        feed(name.as_bytes());
        feed(&[0xff]);
        feed(value.as_bytes());
        feed(&[0xff]);
    }
    hash
}

/// Removes labels that must not leave the agent: every name starting with
/// `__` except `__name__`, and empty values (Prometheus treats an empty
/// value as an absent label).
pub fn finalize(labels: &mut Labels) {
    labels
        .retain(|name, value| !value.is_empty() && (!name.starts_with("__") || name == "__name__"));
}

/// A label set from literal pairs, for tests.
#[cfg(test)]
pub(crate) fn labels_from(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::labels::labels_from as set;

    #[test]
    fn label_name_validation() {
        for ok in ["a", "_", "service_name", "A9_b", "__meta_x"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a.b", "a b", "é"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn series_key_is_stable_and_distinguishes_sets() {
        let a = set(&[("a", "1"), ("b", "2")]);
        // Known value (computed independently) pins the algorithm: changing
        // it would split every existing series.
        assert_eq!(series_key(&a), 0x1cc3_7fac_8a64_ae01);
        assert_eq!(series_key(&Labels::new()), 0xcbf2_9ce4_8422_2325);
        // The separator keeps ("ab","") and ("a","b") apart.
        assert_ne!(
            series_key(&set(&[("ab", "")])),
            series_key(&set(&[("a", "b")]))
        );
        assert_ne!(series_key(&a), series_key(&set(&[("a", "1"), ("b", "3")])));
    }

    #[test]
    fn finalize_drops_double_underscore_and_empty_but_keeps_name() {
        let mut l = set(&[
            ("__meta_process_pid", "1"),
            ("__address__", "x"),
            ("__name__", "cpu"),
            ("empty", ""),
            ("service_name", "svc"),
        ]);
        finalize(&mut l);
        assert_eq!(l, set(&[("__name__", "cpu"), ("service_name", "svc")]));
    }
}
