//! Pyroscope's flamebearer JSON: the format its UI (and ours) draws flame graphs from.
//!
//! `levels[d]` lists the nodes at depth `d` left to right, 4 numbers per node for a single
//! profile — `[x offset, total, self, name index]` — and 7 for a diff — `[left offset,
//! left total, left self, right offset, right total, right self, name index]`. Offsets are
//! delta-encoded: relative to where the previous node of the same level ended (per side).
//! Level 0 is the root, "total". Children are ordered by name.
//!
//! Trees larger than `max_nodes` are truncated: the `max_nodes` heaviest nodes are kept
//! (a node is never lighter than its child, so kept nodes form a tree) and the dropped
//! children of each kept node are merged into one "other" child.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::hash::FxHashMap;
use crate::tree::Tree;

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Flamebearer {
    pub names: Vec<String>,
    pub levels: Vec<Vec<u64>>,
    pub num_ticks: u64,
    pub max_self: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// "single" or "double".
    pub format: &'static str,
    /// "samples", "objects", "bytes", ... ; for time-valued profiles "samples" with a
    /// `sample_rate` that converts ticks to seconds (1e9 when ticks are nanoseconds).
    pub units: String,
    pub sample_rate: u64,
    pub spy_name: String,
    pub name: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// Unix seconds of the first point.
    pub start_time: i64,
    pub samples: Vec<u64>,
    /// Seconds between points.
    pub duration_delta: i64,
}

/// `/pyroscope/render` response.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SingleRender {
    pub version: u32,
    pub flamebearer: Flamebearer,
    pub metadata: Metadata,
    pub timeline: Timeline,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<BTreeMap<String, Timeline>>,
}

/// `/pyroscope/render-diff` response.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffRender {
    pub version: u32,
    pub flamebearer: Flamebearer,
    pub metadata: Metadata,
    pub left_ticks: u64,
    pub right_ticks: u64,
    pub timeline: Timeline,
    pub left_timeline: Timeline,
    pub right_timeline: Timeline,
}

/// Which nodes survive truncation to `max_nodes` (by `total[0] + total[1]`).
fn kept(tree: &Tree, max_nodes: usize) -> Vec<bool> {
    let n = tree.nodes.len();
    let weight = |i: usize| tree.nodes[i].total[0].saturating_add(tree.nodes[i].total[1]);
    let max_nodes = max_nodes.max(1);
    if n <= max_nodes {
        return vec![true; n];
    }
    let mut ws: Vec<u64> = (0..n).map(weight).collect();
    let (_, nth, _) = ws.select_nth_unstable_by(max_nodes - 1, |a, b| b.cmp(a));
    let threshold = *nth;
    let mut keep = vec![false; n];
    let mut count = 0;
    keep[0] = true;
    count += 1;
    // Strictly heavier nodes first: their parents are at least as heavy, so kept too.
    for (i, k) in keep.iter_mut().enumerate().skip(1) {
        if weight(i) > threshold {
            *k = true;
            count += 1;
        }
    }
    // Ties at the threshold, parents before children (ids grow downward), while room left.
    for i in 1..n {
        if count >= max_nodes {
            break;
        }
        if !keep[i] && weight(i) == threshold && keep[tree.nodes[i].parent as usize] {
            keep[i] = true;
            count += 1;
        }
    }
    keep
}

enum Item {
    Node(u32),
    Other { total: [u64; 2] },
}

/// Encodes `tree` (sides: 1 for single, 2 for diff) as flamebearer levels.
fn encode(tree: &Tree, max_nodes: usize, sides: usize) -> Flamebearer {
    let keep = kept(tree, max_nodes);
    let children = tree.children();
    let mut names: Vec<String> = Vec::new();
    let mut name_ids: FxHashMap<String, u64> = FxHashMap::default();
    let mut name_id = |s: &str| -> u64 {
        if let Some(&i) = name_ids.get(s) {
            return i;
        }
        let i = names.len() as u64;
        names.push(s.to_owned());
        name_ids.insert(s.to_owned(), i);
        i
    };
    let mut levels: Vec<Vec<u64>> = Vec::new();
    let mut prev_end: Vec<[u64; 2]> = Vec::new();
    let mut max_self = 0u64;
    // (item, depth, x per side)
    let mut stack: Vec<(Item, usize, [u64; 2])> = vec![(Item::Node(0), 0, [0, 0])];
    while let Some((item, depth, x)) = stack.pop() {
        if levels.len() <= depth {
            levels.push(Vec::new());
            prev_end.push([0, 0]);
        }
        let (total, self_, name) = match &item {
            Item::Node(i) => {
                let n = &tree.nodes[*i as usize];
                (n.total, n.self_, name_id(tree.name(*i)))
            }
            Item::Other { total } => (*total, *total, name_id("other")),
        };
        let level = &mut levels[depth];
        for side in 0..sides {
            level.push(x[side] - prev_end[depth][side]);
            level.push(total[side]);
            level.push(self_[side]);
            prev_end[depth][side] = x[side] + total[side];
            max_self = max_self.max(self_[side]);
        }
        level.push(name);
        if let Item::Node(i) = item {
            let mut next: Vec<(Item, usize, [u64; 2])> = Vec::new();
            let mut cx = x;
            let mut other = [0u64; 2];
            let mut dropped = false;
            for &c in &children[i as usize] {
                let t = tree.nodes[c as usize].total;
                if keep[c as usize] {
                    next.push((Item::Node(c), depth + 1, cx));
                    for side in 0..2 {
                        cx[side] += t[side];
                    }
                } else {
                    dropped = true;
                    for side in 0..2 {
                        other[side] += t[side];
                    }
                }
            }
            if dropped {
                next.push((Item::Other { total: other }, depth + 1, cx));
            }
            // Push in reverse so the leftmost child is processed first.
            stack.extend(next.into_iter().rev());
        }
    }
    let num_ticks = (0..sides).map(|s| tree.total(s)).sum();
    Flamebearer {
        names,
        levels,
        num_ticks,
        max_self,
    }
}

pub fn single(tree: &Tree, max_nodes: usize) -> Flamebearer {
    encode(tree, max_nodes, 1)
}

pub fn diff(tree: &Tree, max_nodes: usize) -> Flamebearer {
    encode(tree, max_nodes, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;

    fn node(name: u32, parent: u32, total: u64, self_: u64) -> Node {
        Node {
            name,
            parent,
            total: [total, 0],
            self_: [self_, 0],
        }
    }

    fn sample_tree() -> Tree {
        // total(10) -> main(10) -> { a(6, self 6), b(3, self 3) }, main self 1
        Tree {
            names: vec!["total".into(), "main".into(), "a".into(), "b".into()],
            nodes: vec![
                node(0, 0, 10, 0),
                node(1, 0, 10, 1),
                node(2, 1, 6, 6),
                node(3, 1, 3, 3),
            ],
        }
    }

    #[test]
    fn encodes_levels_with_delta_offsets() {
        let fb = single(&sample_tree(), 100);
        assert_eq!(fb.names, vec!["total", "main", "a", "b"]);
        assert_eq!(fb.levels[0], vec![0, 10, 0, 0]);
        assert_eq!(fb.levels[1], vec![0, 10, 1, 1]);
        // a at x=0, b at x=6: delta from a's end (6) is 0.
        assert_eq!(fb.levels[2], vec![0, 6, 6, 2, 0, 3, 3, 3]);
        assert_eq!(fb.num_ticks, 10);
        assert_eq!(fb.max_self, 6);
    }

    #[test]
    fn truncates_into_other() {
        let fb = single(&sample_tree(), 3);
        assert_eq!(fb.levels[2], vec![0, 6, 6, 2, 0, 3, 3, 3]);
        assert_eq!(fb.names[3], "other");
    }

    #[test]
    fn diff_has_seven_numbers() {
        let mut t = sample_tree();
        t.nodes[0].total[1] = 4;
        t.nodes[1].total[1] = 4;
        t.nodes[3].total[1] = 4;
        t.nodes[3].self_[1] = 4;
        let fb = diff(&t, 100);
        assert_eq!(fb.levels[0], vec![0, 10, 0, 0, 4, 0, 0]);
        assert_eq!(fb.levels[2], vec![0, 6, 6, 0, 0, 0, 2, 0, 3, 3, 0, 4, 4, 3]);
        assert_eq!(fb.num_ticks, 14);
    }
}
