//! Prometheus `relabel_config` semantics over a [`Labels`] set.
//!
//! Field names, defaults and behaviour follow Prometheus: `source_labels`
//! values are joined with `separator` (default `;`), `regex` (default
//! `(.*)`) is fully anchored as `^(?s:<regex>)$`, `replacement` defaults to
//! `$1` and expands `$1`, `${1}`, `$name` and `${name}` (`$$` is a literal
//! `$`; as in Go, `$1x` names group `1x`, so write `${1}x`), and `action`
//! defaults to `replace`.

use std::fmt;

use md5::{Digest, Md5};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::labels::{is_valid_label_name, Labels};

/// What a rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set `target_label` to the expanded `replacement` if the regex matches
    /// the joined source values; an empty result deletes `target_label`.
    #[default]
    Replace,
    /// Drop the target unless the regex matches the joined source values.
    Keep,
    /// Drop the target if the regex matches the joined source values.
    Drop,
    /// Set `target_label` to `md5(joined) % modulus`.
    HashMod,
    /// For every label whose name matches, copy its value to the label
    /// named by the expanded `replacement`.
    LabelMap,
    /// Remove every label whose name matches.
    LabelDrop,
    /// Remove every label whose name does not match.
    LabelKeep,
    /// Set `target_label` to the lowercased joined source values.
    Lowercase,
    /// Set `target_label` to the uppercased joined source values.
    Uppercase,
    /// Drop the target unless the joined source values equal `target_label`'s value.
    KeepEqual,
    /// Drop the target if the joined source values equal `target_label`'s value.
    DropEqual,
}

/// A compiled, anchored regular expression that remembers its source text
/// for serialization and error messages.
#[derive(Clone)]
pub struct RelabelRegex {
    source: String,
    anchored: regex::Regex,
}

impl RelabelRegex {
    /// Compiles `source` anchored at both ends, as Prometheus does.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        // Compile the text as written first so errors point into it rather
        // than into the anchored wrapper.
        regex::Regex::new(source)?;
        Ok(Self {
            source: source.to_owned(),
            anchored: regex::Regex::new(&format!("^(?s:{source})$"))?,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        self.anchored.is_match(text)
    }

    /// Expands `template` against `text` if the whole of `text` matches.
    fn expand(&self, text: &str, template: &str) -> Option<String> {
        let caps = self.anchored.captures(text)?;
        let mut out = String::new();
        caps.expand(template, &mut out);
        Some(out)
    }
}

impl Default for RelabelRegex {
    fn default() -> Self {
        Self::new("(.*)").expect("default regex compiles")
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for RelabelRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

impl<'de> Deserialize<'de> for RelabelRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        RelabelRegex::new(&source)
            .map_err(|e| serde::de::Error::custom(format!("invalid regex {source:?}: {e}")))
    }
}

impl Serialize for RelabelRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

fn default_separator() -> String {
    ";".to_owned()
}

fn default_replacement() -> String {
    "$1".to_owned()
}

/// One relabel rule, deserializable with Prometheus' YAML field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined to form the matched text.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins source values; default `;`.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Anchored regular expression; default `(.*)`.
    #[serde(default)]
    pub regex: RelabelRegex,
    /// Label written by replace, hashmod, lowercase, uppercase; compared by
    /// keepequal/dropequal. May contain `$1`-style references for replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    /// Template for replace and labelmap; default `$1`.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// Modulus for hashmod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
    /// Default `replace`.
    #[serde(default)]
    pub action: Action,
}

/// A rule that cannot work as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelabelConfigError {
    /// The action writes or compares a label but none is named.
    #[error("relabel action {0:?} requires 'target_label'")]
    MissingTargetLabel(Action),
    /// `target_label` is not a label name (nor, for replace, a template).
    #[error("relabel action {action:?}: invalid target_label {label:?}")]
    InvalidTargetLabel {
        /// The rule's action.
        action: Action,
        /// The offending name.
        label: String,
    },
    /// hashmod without a positive modulus.
    #[error("relabel action hashmod requires a positive 'modulus'")]
    MissingModulus,
    /// labeldrop/labelkeep only look at label names.
    #[error(
        "relabel action {0:?} only uses 'regex'; 'source_labels' and 'target_label' must be unset"
    )]
    NameActionWithLabels(Action),
    /// A source label name is invalid.
    #[error("invalid source label name {0:?}")]
    InvalidSourceLabel(String),
}

impl RelabelConfig {
    /// A replace rule with the given pieces and default separator.
    pub fn replace(sources: &[&str], regex: &str, target: &str, replacement: &str) -> Self {
        Self {
            source_labels: sources.iter().map(|s| s.to_string()).collect(),
            separator: default_separator(),
            regex: RelabelRegex::new(regex).expect("rule regex compiles"),
            target_label: Some(target.to_owned()),
            replacement: replacement.to_owned(),
            modulus: None,
            action: Action::Replace,
        }
    }

    /// Checks the rule the way Prometheus does when loading configuration.
    pub fn validate(&self) -> Result<(), RelabelConfigError> {
        use Action::*;
        if let Some(bad) = self.source_labels.iter().find(|l| !is_valid_label_name(l)) {
            return Err(RelabelConfigError::InvalidSourceLabel(bad.clone()));
        }
        match self.action {
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual => {
                let label = self
                    .target_label
                    .as_deref()
                    .ok_or(RelabelConfigError::MissingTargetLabel(self.action))?;
                // Only replace expands the target label as a template.
                let valid = if self.action == Replace {
                    is_valid_target_template(label)
                } else {
                    is_valid_label_name(label)
                };
                if !valid {
                    return Err(RelabelConfigError::InvalidTargetLabel {
                        action: self.action,
                        label: label.to_owned(),
                    });
                }
            }
            LabelDrop | LabelKeep => {
                if !self.source_labels.is_empty() || self.target_label.is_some() {
                    return Err(RelabelConfigError::NameActionWithLabels(self.action));
                }
            }
            Keep | Drop | LabelMap => {}
        }
        if self.action == HashMod && self.modulus.unwrap_or(0) == 0 {
            return Err(RelabelConfigError::MissingModulus);
        }
        Ok(())
    }

    fn joined_sources(&self, labels: &Labels) -> String {
        let values: Vec<&str> = self
            .source_labels
            .iter()
            .map(|name| labels.get(name).map(String::as_str).unwrap_or(""))
            .collect();
        values.join(&self.separator)
    }

    /// Applies this rule. Returns `false` if the target is dropped.
    pub fn apply(&self, labels: &mut Labels) -> bool {
        use Action::*;
        let target = self.target_label.as_deref().unwrap_or("");
        match self.action {
            Replace => {
                let value = self.joined_sources(labels);
                let Some(target) = self.regex.expand(&value, target) else {
                    return true;
                };
                if !is_valid_label_name(&target) {
                    return true;
                }
                let Some(result) = self.regex.expand(&value, &self.replacement) else {
                    return true;
                };
                if result.is_empty() {
                    labels.remove(&target);
                } else {
                    labels.insert(target, result);
                }
            }
            Keep => return self.regex.is_match(&self.joined_sources(labels)),
            Drop => return !self.regex.is_match(&self.joined_sources(labels)),
            KeepEqual => {
                let equal = labels.get(target).map(String::as_str).unwrap_or("")
                    == self.joined_sources(labels);
                return equal;
            }
            DropEqual => {
                let equal = labels.get(target).map(String::as_str).unwrap_or("")
                    == self.joined_sources(labels);
                return !equal;
            }
            HashMod => {
                let digest = Md5::digest(self.joined_sources(labels).as_bytes());
                // Prometheus reads the last 8 bytes of the digest big-endian.
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..]);
                let modulus = self.modulus.unwrap_or(1).max(1);
                labels.insert(
                    target.to_owned(),
                    (u64::from_be_bytes(tail) % modulus).to_string(),
                );
            }
            Lowercase => {
                let value = self.joined_sources(labels).to_lowercase();
                labels.insert(target.to_owned(), value);
            }
            Uppercase => {
                let value = self.joined_sources(labels).to_uppercase();
                labels.insert(target.to_owned(), value);
            }
            LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, value)| {
                        let new_name = self.regex.expand(name, &self.replacement)?;
                        Some((new_name, value.clone()))
                    })
                    .collect();
                for (name, value) in mapped {
                    if is_valid_label_name(&name) {
                        labels.insert(name, value);
                    }
                }
            }
            LabelDrop => labels.retain(|name, _| !self.regex.is_match(name)),
            LabelKeep => labels.retain(|name, _| self.regex.is_match(name)),
        }
        true
    }
}

/// A target label for replace may contain `$1`/`${name}` references; it
/// must still be made of label-name characters around them.
fn is_valid_target_template(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'{' | b'}'))
}

/// Applies `rules` in order. Returns `None` as soon as one drops the target.
pub fn process(mut labels: Labels, rules: &[RelabelConfig]) -> Option<Labels> {
    for rule in rules {
        if !rule.apply(&mut labels) {
            return None;
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::labels::labels_from as set;

    /// Parses one rule from TOML, as a user would write it.
    fn rule(toml_text: &str) -> RelabelConfig {
        let r: RelabelConfig = toml::from_str(toml_text).expect("rule parses");
        r.validate().expect("rule is valid");
        r
    }

    fn run(toml_text: &str, input: &[(&str, &str)]) -> Option<Labels> {
        process(set(input), &[rule(toml_text)])
    }

    #[test]
    fn defaults_match_prometheus() {
        let r = rule(r#"target_label = "x""#);
        assert_eq!(r.action, Action::Replace);
        assert_eq!(r.separator, ";");
        assert_eq!(r.regex.as_str(), "(.*)");
        assert_eq!(r.replacement, "$1");
    }

    #[test]
    fn replace_joins_with_separator_and_expands_groups() {
        let input = [("a", "foo"), ("b", "bar")];
        let out = run(
            r#"
            source_labels = ["a", "b"]
            regex = "(f.o);(?P<second>.*)"
            target_label = "c"
            replacement = "${1}-$second-$$"
            "#,
            &input,
        );
        assert_eq!(out.expect("kept")["c"], "foo-bar-$");
        let out = run(
            r#"
            source_labels = ["a", "b"]
            separator = "|"
            regex = "foo\\|(.*)"
            target_label = "c"
            "#,
            &input,
        );
        assert_eq!(out.expect("kept")["c"], "bar");
    }

    #[test]
    fn replace_go_style_greedy_group_names() {
        // `$1x` refers to group "1x", which does not exist: empty result,
        // which deletes the target label.
        let out = run(
            r#"
            source_labels = ["a"]
            regex = "(.*)"
            target_label = "a"
            replacement = "$1x"
            "#,
            &[("a", "v")],
        )
        .expect("kept");
        assert!(!out.contains_key("a"));
    }

    #[test]
    fn regex_is_fully_anchored() {
        let r = r#"
            source_labels = ["a"]
            regex = "oo"
            target_label = "hit"
            replacement = "yes"
        "#;
        assert!(!run(r, &[("a", "foo")]).expect("kept").contains_key("hit"));
        assert_eq!(run(r, &[("a", "oo")]).expect("kept")["hit"], "yes");
        // Alternation stays inside the anchors: `a|b` must not match "ab".
        let alt = r#"
            source_labels = ["a"]
            regex = "x|y"
            action = "keep"
        "#;
        assert!(run(alt, &[("a", "xy")]).is_none());
        assert!(run(alt, &[("a", "y")]).is_some());
        // (?s): `.` matches newlines, as in Prometheus.
        assert!(run(
            r#"source_labels = ["a"]
            regex = "a.b"
            action = "keep""#,
            &[("a", "a\nb")]
        )
        .is_some());
    }

    #[test]
    fn replace_no_match_is_noop_and_empty_result_deletes() {
        let r = r#"
            source_labels = ["missing"]
            regex = "(.+)"
            target_label = "t"
        "#;
        assert_eq!(run(r, &[("t", "keep me")]).expect("kept")["t"], "keep me");
        let r = r#"
            source_labels = ["missing"]
            target_label = "t"
        "#;
        assert!(!run(r, &[("t", "gone")]).expect("kept").contains_key("t"));
    }

    #[test]
    fn replace_with_templated_target_label() {
        let out = run(
            r#"
            source_labels = ["k"]
            regex = "(.*)=(.*)"
            target_label = "label_$1"
            replacement = "$2"
            "#,
            &[("k", "env=prod")],
        )
        .expect("kept");
        assert_eq!(out["label_env"], "prod");
        // An expanded name that is not a label name is skipped.
        let out = run(
            r#"
            source_labels = ["k"]
            regex = "(.*)=(.*)"
            target_label = "${1}"
            replacement = "$2"
            "#,
            &[("k", "not valid=prod")],
        )
        .expect("kept");
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn keep_and_drop() {
        let keep = r#"
            source_labels = ["env"]
            regex = "prod|staging"
            action = "keep"
        "#;
        assert!(run(keep, &[("env", "prod")]).is_some());
        assert!(run(keep, &[("env", "dev")]).is_none());
        assert!(run(keep, &[]).is_none());
        let drop = r#"
            source_labels = ["env"]
            regex = "dev"
            action = "drop"
        "#;
        assert!(run(drop, &[("env", "dev")]).is_none());
        assert!(run(drop, &[("env", "prod")]).is_some());
    }

    #[test]
    fn keepequal_and_dropequal() {
        let r = r#"
            source_labels = ["a"]
            target_label = "b"
            action = "keepequal"
        "#;
        assert!(run(r, &[("a", "1"), ("b", "1")]).is_some());
        assert!(run(r, &[("a", "1"), ("b", "2")]).is_none());
        let r = r#"
            source_labels = ["a"]
            target_label = "b"
            action = "dropequal"
        "#;
        assert!(run(r, &[("a", "1"), ("b", "1")]).is_none());
        assert!(run(r, &[("a", "1"), ("b", "2")]).is_some());
    }

    #[test]
    fn labelmap_copies_matching_names() {
        let out = run(
            r#"
            regex = "__meta_env_var_(.+)"
            action = "labelmap"
            replacement = "env_$1"
            "#,
            &[("__meta_env_var_REGION", "eu"), ("other", "x")],
        )
        .expect("kept");
        assert_eq!(out["env_REGION"], "eu");
        assert_eq!(
            out["__meta_env_var_REGION"], "eu",
            "labelmap copies, not moves"
        );
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn labeldrop_and_labelkeep() {
        let input = [("keep_a", "1"), ("keep_b", "2"), ("other", "3")];
        let out = run(
            r#"
            regex = "keep_.*"
            action = "labeldrop"
            "#,
            &input,
        )
        .expect("kept");
        assert_eq!(out, set(&[("other", "3")]));
        let out = run(
            r#"
            regex = "keep_.*"
            action = "labelkeep"
            "#,
            &input,
        )
        .expect("kept");
        assert_eq!(out, set(&[("keep_a", "1"), ("keep_b", "2")]));
        // Anchored: "keep" alone does not match "keep_a".
        let out = run(
            r#"
            regex = "keep"
            action = "labeldrop"
            "#,
            &input,
        )
        .expect("kept");
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn hashmod_matches_prometheus_algorithm() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; the last 8 bytes
        // 0xedef654fccc4a4d8 % 1000 = 696 (computed independently).
        let out = run(
            r#"
            source_labels = ["a"]
            target_label = "shard"
            modulus = 1000
            action = "hashmod"
            "#,
            &[("a", "foo")],
        )
        .expect("kept");
        assert_eq!(out["shard"], "696");
    }

    #[test]
    fn lowercase_and_uppercase() {
        let out = run(
            r#"
            source_labels = ["a"]
            target_label = "lower"
            action = "lowercase"
            "#,
            &[("a", "MiXeD")],
        )
        .expect("kept");
        assert_eq!(out["lower"], "mixed");
        let out = run(
            r#"
            source_labels = ["a"]
            target_label = "upper"
            action = "uppercase"
            "#,
            &[("a", "MiXeD")],
        )
        .expect("kept");
        assert_eq!(out["upper"], "MIXED");
    }

    #[test]
    fn rules_apply_in_order_and_stop_at_drop() {
        let rules: Vec<RelabelConfig> = vec![
            RelabelConfig::replace(&["a"], "(.*)", "b", "$1"),
            rule(
                r#"
                source_labels = ["b"]
                regex = "x"
                action = "drop"
                "#,
            ),
        ];
        assert!(process(set(&[("a", "x")]), &rules).is_none());
        assert_eq!(process(set(&[("a", "y")]), &rules).expect("kept")["b"], "y");
    }

    #[test]
    fn invalid_rules_are_rejected() {
        let parse = |t: &str| toml::from_str::<RelabelConfig>(t);
        let err = parse(r#"regex = "(""#).expect_err("bad regex");
        assert!(err.to_string().contains("invalid regex"), "{err}");
        let err = parse(r#"action = "explode""#).expect_err("bad action");
        assert!(err.to_string().contains("explode"), "{err}");
        let err = parse(r#"targetlabel = "x""#).expect_err("unknown field");
        assert!(err.to_string().contains("targetlabel"), "{err}");

        let validate = |t: &str| parse(t).expect("parses").validate();
        assert_eq!(
            validate("source_labels = [\"a\"]"),
            Err(RelabelConfigError::MissingTargetLabel(Action::Replace))
        );
        assert_eq!(
            validate("target_label = \"x\"\naction = \"hashmod\""),
            Err(RelabelConfigError::MissingModulus)
        );
        assert!(matches!(
            validate("target_label = \"bad-name\""),
            Err(RelabelConfigError::InvalidTargetLabel { .. })
        ));
        assert_eq!(
            validate("source_labels = [\"a\"]\naction = \"labeldrop\""),
            Err(RelabelConfigError::NameActionWithLabels(Action::LabelDrop))
        );
        assert_eq!(
            validate("source_labels = [\"a b\"]\ntarget_label = \"x\""),
            Err(RelabelConfigError::InvalidSourceLabel("a b".into()))
        );
    }
}
