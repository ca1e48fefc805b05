//! Call trees merged from stacks, with one value per side (one side for a flame graph,
//! two for a diff). Nodes are frames named by function: stacks through different lines or
//! files of one function name merge, as in Pyroscope.

use crate::hash::FxHashMap;
use crate::symbols::Symbols;

pub const ROOT: u32 = 0;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Index into [`Tree::names`].
    pub name: u32,
    pub parent: u32,
    pub total: [u64; 2],
    pub self_: [u64; 2],
}

/// A merged call tree. Node 0 is the root, named "total"; parents come before children.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub names: Vec<String>,
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn total(&self, side: usize) -> u64 {
        self.nodes.first().map_or(0, |r| r.total[side])
    }

    pub fn name(&self, node: u32) -> &str {
        &self.names[self.nodes[node as usize].name as usize]
    }

    /// Children of each node, sorted by name.
    pub fn children(&self) -> Vec<Vec<u32>> {
        let mut ch = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            ch[n.parent as usize].push(i as u32);
        }
        for c in &mut ch {
            c.sort_by(|a, b| self.name(*a).cmp(self.name(*b)));
        }
        ch
    }

    /// Sum of `total[side]` of the nodes named `name` that are not inside another node of
    /// that name (so recursion is not counted twice).
    pub fn function_total(&self, name: &str, side: usize) -> u64 {
        let Some(id) = self.names.iter().position(|n| n == name) else {
            return 0;
        };
        let mut sum = 0;
        'nodes: for (i, n) in self.nodes.iter().enumerate().skip(1) {
            if n.name as usize != id {
                continue;
            }
            let mut p = n.parent;
            while p != ROOT {
                if self.nodes[p as usize].name as usize == id {
                    continue 'nodes;
                }
                p = self.nodes[p as usize].parent;
            }
            let _ = i;
            sum += n.total[side];
        }
        sum
    }

    /// Folded text: `root;...;leaf value` per node with self value (side 0), sorted.
    pub fn folded(&self) -> String {
        let mut paths: Vec<String> = vec![String::new(); self.nodes.len()];
        let mut lines = Vec::new();
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            let parent = &paths[n.parent as usize];
            let name = &self.names[n.name as usize];
            paths[i] = if parent.is_empty() {
                name.clone()
            } else {
                format!("{parent};{name}")
            };
            if n.self_[0] > 0 {
                lines.push(format!("{} {}", paths[i], n.self_[0]));
            }
        }
        lines.sort();
        let mut out = lines.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// Builds a [`Tree`] from `(stack id, value)` pairs, memoizing each stack's node so shared
/// prefixes are walked once.
pub struct TreeBuilder<'a> {
    symbols: &'a Symbols,
    tree: Tree,
    children: FxHashMap<(u32, u64), u32>,
    name_ids: FxHashMap<u64, u32>,
    memo: FxHashMap<u32, u32>,
    chain: Vec<u32>,
}

const UNSYMBOLIZED: u64 = 1 << 40;

impl<'a> TreeBuilder<'a> {
    pub fn new(symbols: &'a Symbols) -> Self {
        let mut tree = Tree::default();
        tree.names.push("total".to_owned());
        tree.nodes.push(Node {
            name: 0,
            parent: ROOT,
            total: [0; 2],
            self_: [0; 2],
        });
        TreeBuilder {
            symbols,
            tree,
            children: FxHashMap::default(),
            name_ids: FxHashMap::default(),
            memo: FxHashMap::default(),
            chain: Vec::new(),
        }
    }

    fn name_index(&mut self, key: u64) -> u32 {
        if let Some(&i) = self.name_ids.get(&key) {
            return i;
        }
        let text = if key & UNSYMBOLIZED != 0 {
            let loc = (key & !UNSYMBOLIZED) as u32;
            match self.symbols.location_of(loc) {
                Some(l) if l.mapping != 0 => {
                    let file = self.symbols.str(l.mapping);
                    let base = file.rsplit('/').next().unwrap_or(file);
                    format!("{base}+0x{:x}", l.address)
                }
                Some(l) => format!("0x{:x}", l.address),
                None => "unknown".to_owned(),
            }
        } else {
            let s = self.symbols.str(key as u32);
            if s.is_empty() {
                "unknown".to_owned()
            } else {
                s.to_owned()
            }
        };
        let i = self.tree.names.len() as u32;
        self.tree.names.push(text);
        self.name_ids.insert(key, i);
        i
    }

    fn child(&mut self, parent: u32, key: u64) -> u32 {
        if let Some(&c) = self.children.get(&(parent, key)) {
            return c;
        }
        let name = self.name_index(key);
        let id = self.tree.nodes.len() as u32;
        self.tree.nodes.push(Node {
            name,
            parent,
            total: [0; 2],
            self_: [0; 2],
        });
        self.children.insert((parent, key), id);
        id
    }

    fn node_for_stack(&mut self, stack: u32) -> u32 {
        let mut chain = std::mem::take(&mut self.chain);
        chain.clear();
        let mut s = stack;
        let mut node = ROOT;
        while s != 0 {
            if let Some(&n) = self.memo.get(&s) {
                node = n;
                break;
            }
            chain.push(s);
            match self.symbols.stack_of(s) {
                Some((parent, _)) => s = parent,
                None => break,
            }
        }
        for &s in chain.iter().rev() {
            if let Some((_, loc)) = self.symbols.stack_of(s) {
                match self.symbols.location_of(loc) {
                    Some(l) if !l.lines.is_empty() => {
                        // Lines are innermost first; walk from the caller inward.
                        for &(f, _) in l.lines.iter().rev() {
                            let (name, _) = self.symbols.function_of(f);
                            node = self.child(node, u64::from(name));
                        }
                    }
                    _ => node = self.child(node, UNSYMBOLIZED | u64::from(loc)),
                }
            }
            self.memo.insert(s, node);
        }
        self.chain = chain;
        node
    }

    pub fn add(&mut self, stack: u32, value: u64, side: usize) {
        let n = self.node_for_stack(stack);
        let s = &mut self.tree.nodes[n as usize].self_[side];
        *s = s.saturating_add(value);
    }

    pub fn build(mut self) -> Tree {
        let nodes = &mut self.tree.nodes;
        for n in nodes.iter_mut() {
            n.total = n.self_;
        }
        for i in (1..nodes.len()).rev() {
            let (p, t) = (nodes[i].parent as usize, nodes[i].total);
            for (acc, v) in nodes[p].total.iter_mut().zip(t) {
                *acc = acc.saturating_add(v);
            }
        }
        self.tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::LocKey;

    pub(crate) fn stack_of_names(sym: &mut Symbols, names: &[&str]) -> u32 {
        let mut s = 0;
        for n in names {
            let name = sym.string(n);
            let f = sym.function(name, 0);
            let l = sym.location(LocKey {
                mapping: 0,
                address: 0,
                lines: vec![(f, 0)].into(),
            });
            s = sym.stack(s, l);
        }
        s
    }

    #[test]
    fn builds_totals_and_folded() {
        let mut sym = Symbols::new();
        let a = stack_of_names(&mut sym, &["main", "a"]);
        let b = stack_of_names(&mut sym, &["main", "b"]);
        let m = stack_of_names(&mut sym, &["main"]);
        let mut tb = TreeBuilder::new(&sym);
        tb.add(a, 3, 0);
        tb.add(b, 5, 0);
        tb.add(m, 1, 0);
        tb.add(a, 2, 1);
        let t = tb.build();
        assert_eq!(t.total(0), 9);
        assert_eq!(t.total(1), 2);
        assert_eq!(t.function_total("main", 0), 9);
        assert_eq!(t.folded(), "main 1\nmain;a 3\nmain;b 5\n");
    }
}
