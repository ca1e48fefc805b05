//! Building a pprof profile from merged stacks.

use kiln_proto::builder::{FrameSpec, MappingSpec};
use kiln_proto::pprof::Profile;
use kiln_proto::ProfileBuilder;

use crate::hash::FxHashMap;
use crate::index::ProfileTypeInfo;
use crate::symbols::Symbols;

/// One sample per `(stack, value)`; locations, functions and mappings rebuilt from the
/// interned symbols.
pub fn pprof(
    sym: &Symbols,
    ty: &ProfileTypeInfo,
    pairs: &[(u32, u64)],
    from: i64,
    until: i64,
) -> Profile {
    let parts: Vec<&str> = ty.id.split(':').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("");
    let mut b = ProfileBuilder::new(&[(part(1), part(2))], (part(3), part(4)), ty.period);
    b.set_time(from, until - from);
    let mut locs: FxHashMap<u32, u64> = FxHashMap::default();
    let mut ids = Vec::new();
    for &(stack, value) in pairs {
        ids.clear();
        let mut s = stack;
        while let Some((parent, loc)) = sym.stack_of(s) {
            let id = match locs.get(&loc) {
                Some(&id) => id,
                None => {
                    let id = match sym.location_of(loc) {
                        Some(l) => {
                            let mapping = if l.mapping != 0 {
                                b.mapping(&MappingSpec {
                                    filename: sym.str(l.mapping).to_owned(),
                                    has_functions: true,
                                    ..Default::default()
                                })
                            } else {
                                0
                            };
                            let names: Vec<(String, String, i64)> = l
                                .lines
                                .iter()
                                .map(|&(f, line)| {
                                    let (n, file) = sym.function_of(f);
                                    (sym.str(n).to_owned(), sym.str(file).to_owned(), line)
                                })
                                .collect();
                            let frames: Vec<FrameSpec<'_>> = names
                                .iter()
                                .map(|(n, f, line)| FrameSpec {
                                    name: n,
                                    filename: f,
                                    line: *line,
                                })
                                .collect();
                            b.location(mapping, l.address, &frames)
                        }
                        None => b.location(0, 0, &[]),
                    };
                    locs.insert(loc, id);
                    id
                }
            };
            ids.push(id);
            s = parent;
        }
        b.add_sample(&ids, &[value.min(i64::MAX as u64) as i64], &[]);
    }
    b.build()
}
