//! Readers for Pyroscope flamebearer JSON (`/pyroscope/render`), single format: levels of
//! `[offset, total, self, name index]` nodes.

use std::collections::HashMap;

/// The function names of a flamebearer (`render["flamebearer"]`).
pub fn names(fb: &serde_json::Value) -> Vec<String> {
    fb["names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n.as_str().unwrap_or("").to_owned())
        .collect()
}

/// Total and self value per function name of a flamebearer (`render["flamebearer"]`),
/// summed over all its nodes: a name at several depths counts at each.
pub fn sums(fb: &serde_json::Value) -> HashMap<String, (u64, u64)> {
    let names = names(fb);
    let mut sums: HashMap<String, (u64, u64)> = HashMap::new();
    for level in fb["levels"].as_array().expect("levels") {
        let level: Vec<i64> = level
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        for node in level.chunks(4) {
            let sum = sums.entry(names[node[3] as usize].clone()).or_default();
            sum.0 += node[1] as u64;
            sum.1 += node[2] as u64;
        }
    }
    sums
}

/// Sum of the totals of the nodes named `name` in a flamebearer (`render["flamebearer"]`).
pub fn function_total(fb: &serde_json::Value, name: &str) -> u64 {
    sums(fb).get(name).map_or(0, |s| s.0)
}

/// Self value per function name in a render, summed over all nodes.
pub fn flamebearer_self(render: &serde_json::Value) -> HashMap<String, u64> {
    sums(&render["flamebearer"])
        .into_iter()
        .map(|(name, (_, own))| (name, own))
        .collect()
}

/// Totals per function name in a render, and the root's total.
pub fn flamebearer_totals(render: &serde_json::Value) -> (HashMap<String, u64>, u64) {
    let totals = sums(&render["flamebearer"])
        .into_iter()
        .map(|(name, (total, _))| (name, total))
        .collect();
    (
        totals,
        render["flamebearer"]["numTicks"].as_u64().unwrap_or(0),
    )
}
