//! Symbolized, aggregated samples of one time window: unique stacks with counts, over a
//! table of unique locations. Both outputs of `kiln record` and the agent's per-target
//! profiles are built from it.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use kiln_proto::{
    builder::{FrameSpec, MappingSpec},
    pprof::Profile,
    ProfileBuilder,
};

use crate::{
    capture::procs::{BinaryId, ProcessTable},
    capture::sampler::RawSample,
    symbolize::{self, Frames, Symbolizer},
};

/// The interpreter loop whose activations Python frames replace.
const PYTHON_EVAL_LOOP: &str = "_PyEval_EvalFrameDefault";
/// The mapping of Python frames in pprof.
const PYTHON_MODULE: &str = "[python]";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum LocationKey {
    Kernel(u64),
    User(BinaryId, u64),
    Unmapped(Arc<str>, u64),
    /// A Python function at one line (the same in every process).
    Python(crate::runtimes::python::code::PyFrameName),
}

/// Where a location's code lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    Kernel,
    Binary {
        path: Arc<str>,
        build_id: Option<Arc<str>>,
    },
    /// Anonymous or special memory ([vdso], JIT code) or a process we could not read.
    Other(Arc<str>),
}

#[derive(Clone, Debug)]
pub struct Location {
    pub module: Module,
    /// File offset for binaries, the address otherwise.
    pub address: u64,
    /// Innermost first.
    pub frames: Frames,
}

/// One unique stack of one process and thread name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub pid: u32,
    pub process: Arc<str>,
    pub thread: Arc<str>,
    /// Indices into [`Aggregate::locations`], leaf first (kernel frames, then user).
    pub locations: Box<[u32]>,
    /// Goroutine pprof labels, for Go programs.
    pub labels: Option<crate::capture::sampler::GoLabelSet>,
}

#[derive(Default)]
pub struct Aggregate {
    pub locations: Vec<Location>,
    index: HashMap<LocationKey, u32>,
    pub stacks: HashMap<StackKey, u64>,
    pub total: u64,
    /// Samples whose process could not be read to symbolize them.
    pub unreadable_process_samples: u64,
    /// See [`Aggregate::deferring_kernel`].
    defer_kernel: bool,
}

impl Aggregate {
    pub fn add(&mut self, samples: &[RawSample], procs: &mut ProcessTable, sym: &mut Symbolizer) {
        let mut locations = Vec::with_capacity(64);
        for sample in samples {
            locations.clear();
            let pid = sample.key.tgid;
            let defer_kernel = self.defer_kernel;
            for &addr in &sample.kernel {
                locations.push(self.intern(LocationKey::Kernel(addr), || Location {
                    module: Module::Kernel,
                    address: addr,
                    frames: if defer_kernel {
                        Frames::from(Vec::new())
                    } else {
                        sym.kernel(addr)
                    },
                }));
            }
            let thread: Arc<str> = comm_str(&sample.key.comm).into();
            let mut process_name = thread.clone();
            if !sample.user.is_empty() {
                if procs.ensure(pid).is_none() {
                    self.unreadable_process_samples += sample.count;
                }
                if let Some(p) = procs.get(pid) {
                    if !p.comm.is_empty() {
                        process_name = p.comm.clone();
                    }
                }
                let user_start = locations.len();
                for (depth, &ip) in sample.user.iter().enumerate() {
                    if ip == crate::unwind::TRUNCATED_FRAME {
                        // The unwinder stopped early: say so rather than guess a root.
                        locations.push(self.intern(
                            LocationKey::Unmapped("[truncated]".into(), 0),
                            || Location {
                                module: Module::Other("[truncated]".into()),
                                address: 0,
                                frames: symbolize::unknown("[truncated]", 0),
                            },
                        ));
                        continue;
                    }
                    // Return addresses point after the call; look up the call itself.
                    let addr = if depth == 0 { ip } else { ip.saturating_sub(1) };
                    let loc = self.user_location(pid, addr, procs, sym);
                    locations.push(loc);
                }
                if let Some(python) = &sample.python {
                    self.merge_python(sample, python, user_start, &mut locations, sym);
                }
            } else if let Some(p) = procs.get(pid) {
                if !p.comm.is_empty() {
                    process_name = p.comm.clone();
                }
            }
            let key = StackKey {
                pid,
                process: process_name,
                thread,
                locations: locations.as_slice().into(),
                labels: sample.go_labels.clone(),
            };
            *self.stacks.entry(key).or_default() += sample.count;
            self.total += sample.count;
        }
    }

    /// Replaces the interpreter activations among `locations[user_start..]` with the
    /// sample's Python frames (see `runtimes::python::merge`); leaves the native stack
    /// as it is, and counts why, when the frames cannot all be named or placed.
    fn merge_python(
        &mut self,
        sample: &RawSample,
        python: &[profiler_common::python::PyFrame],
        user_start: usize,
        locations: &mut Vec<u32>,
        sym: &mut Symbolizer,
    ) {
        use crate::runtimes::python::merge::{merge, Merged};
        use profiler_common::unwind::stack_flags;
        let pid = sample.key.tgid;
        let mut named = Vec::with_capacity(python.len());
        for f in python {
            match sym.python.name(pid, f) {
                Some(name) => named.push(name),
                None => {
                    sym.python.unreadable += sample.count;
                    return;
                }
            }
        }
        let native = &locations[user_start..];
        let is_eval: Vec<bool> = native
            .iter()
            .map(|&l| {
                self.locations[l as usize]
                    .frames
                    .last()
                    .is_some_and(|f| &*f.function == PYTHON_EVAL_LOOP)
            })
            .collect();
        let native_truncated = native.last().is_some_and(|&l| {
            matches!(&self.locations[l as usize].module, Module::Other(m) if &**m == "[truncated]")
        });
        let python_truncated = sample.key.flags & stack_flags::PYTHON_TRUNCATED != 0;
        let Some(merged) = merge(&is_eval, native_truncated, python, python_truncated) else {
            sym.python.mismatched += sample.count;
            return;
        };
        let native: Vec<u32> = native.to_vec();
        locations.truncate(user_start);
        for m in merged {
            let loc = match m {
                Merged::Native(i) => native[i],
                Merged::Python(i) => {
                    let name = named[i].clone();
                    self.intern(LocationKey::Python(name.clone()), || Location {
                        module: Module::Other(PYTHON_MODULE.into()),
                        address: 0,
                        frames: Arc::from(vec![symbolize::Frame {
                            function: name.qualname.clone(),
                            file: Some(name.filename.clone()),
                            line: name.line,
                        }]),
                    })
                }
            };
            locations.push(loc);
        }
    }

    fn user_location(
        &mut self,
        pid: u32,
        addr: u64,
        procs: &mut ProcessTable,
        sym: &mut Symbolizer,
    ) -> u32 {
        let mut mapping = procs.get(pid).and_then(|p| p.mapping_for(addr).cloned());
        if mapping.is_none() && procs.recapture_for_unknown_address(pid) {
            // Mapped after we read the maps (dlopen, JIT): read again.
            mapping = procs.get(pid).and_then(|p| p.mapping_for(addr).cloned());
        }
        let Some(m) = mapping else {
            return self.intern(LocationKey::Unmapped("[unknown]".into(), addr), || {
                Location {
                    module: Module::Other("[unknown]".into()),
                    address: addr,
                    frames: symbolize::unknown("[unknown]", addr),
                }
            });
        };
        let offset = addr - m.start + m.file_offset;
        match m
            .binary
            .and_then(|id| procs.binaries.get(id).map(|b| (id, b)))
        {
            Some((id, binary)) => self.intern(LocationKey::User(id, offset), || Location {
                module: Module::Binary {
                    path: binary.path.clone(),
                    build_id: binary.build_id.as_deref().map(Arc::from),
                },
                address: offset,
                frames: sym.user(id, binary, offset),
            }),
            None => {
                let label = m.label.clone();
                self.intern(LocationKey::Unmapped(label.clone(), offset), || Location {
                    module: Module::Other(label.clone()),
                    address: offset,
                    frames: symbolize::unknown(&label, offset),
                })
            }
        }
    }

    /// An aggregate that leaves kernel frames unnamed until [`Aggregate::resolve_kernel`]:
    /// kernel addresses never go stale, so a one-shot recording names them once at the
    /// end, when the kernel symbol table no longer shares memory with the parsed user
    /// binaries.
    pub fn deferring_kernel() -> Self {
        Self {
            defer_kernel: true,
            ..Default::default()
        }
    }

    /// Names the kernel frames left unnamed by [`Aggregate::deferring_kernel`].
    pub fn resolve_kernel(&mut self, sym: &mut Symbolizer) {
        for loc in &mut self.locations {
            if matches!(loc.module, Module::Kernel) && loc.frames.is_empty() {
                loc.frames = sym.kernel(loc.address);
            }
        }
    }

    fn intern(&mut self, key: LocationKey, make: impl FnOnce() -> Location) -> u32 {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.locations.len() as u32;
        self.locations.push(make());
        self.index.insert(key, i);
        i
    }

    /// Function names root first, inlined frames expanded, for one stack.
    pub fn frames_root_first<'a>(
        &'a self,
        stack: &'a StackKey,
    ) -> impl Iterator<Item = &'a str> + 'a {
        stack.locations.iter().rev().flat_map(move |&l| {
            self.locations[l as usize]
                .frames
                .iter()
                .rev()
                .map(|f| f.function.as_ref())
        })
    }

    /// Folded lines (`process;root;...;leaf count`), sorted for stable output.
    pub fn folded_lines(&self) -> Vec<String> {
        let mut merged: HashMap<String, u64> = HashMap::new();
        for (stack, count) in &self.stacks {
            let mut line = sanitize(&stack.process);
            for f in self.frames_root_first(stack) {
                line.push(';');
                line.push_str(&sanitize(f));
            }
            *merged.entry(line).or_default() += count;
        }
        let mut lines: Vec<String> = merged
            .into_iter()
            .map(|(stack, count)| format!("{stack} {count}"))
            .collect();
        lines.sort();
        lines
    }

    /// A pprof profile of the stacks `keep` accepts. Samples carry the labels pid,
    /// process and thread, plus `extra_labels`.
    pub fn to_pprof(
        &self,
        window: (SystemTime, Duration),
        frequency: u64,
        extra_labels: &[(&str, &str)],
        keep: impl Fn(&StackKey) -> bool,
    ) -> Profile {
        let period = 1_000_000_000 / frequency.max(1) as i64;
        let mut b = ProfileBuilder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            period,
        );
        let start = window
            .0
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        b.set_time(start.as_nanos() as i64, window.1.as_nanos() as i64);
        let mut location_ids: HashMap<u32, u64> = HashMap::new();
        let mut ids = Vec::new();
        for (stack, &count) in self.stacks.iter().filter(|(s, _)| keep(s)) {
            ids.clear();
            for &l in stack.locations.iter() {
                let id = *location_ids
                    .entry(l)
                    .or_insert_with(|| add_location(&mut b, &self.locations[l as usize]));
                ids.push(id);
            }
            let pid = stack.pid.to_string();
            let mut labels: Vec<(&str, &str)> = vec![
                ("pid", &pid),
                ("process", &stack.process),
                ("thread", &stack.thread),
            ];
            labels.extend_from_slice(extra_labels);
            if let Some(go) = &stack.labels {
                // Series labels win over a goroutine label of the same name.
                for (k, v) in go.iter() {
                    if !labels.iter().any(|(name, _)| name == &k.as_ref()) {
                        labels.push((k, v));
                    }
                }
            }
            b.add_sample(&ids, &[count as i64, count as i64 * period], &labels);
        }
        b.build()
    }
}

fn add_location(b: &mut ProfileBuilder, loc: &Location) -> u64 {
    let spec = match &loc.module {
        Module::Kernel => MappingSpec {
            filename: "[kernel.kallsyms]".into(),
            has_functions: true,
            ..Default::default()
        },
        Module::Binary { path, build_id } => MappingSpec {
            filename: path.to_string(),
            build_id: build_id.as_deref().unwrap_or("").to_owned(),
            has_functions: true,
            has_filenames: loc.frames.iter().any(|f| f.file.is_some()),
            has_line_numbers: loc.frames.iter().any(|f| f.line > 0),
            has_inline_frames: loc.frames.len() > 1,
            ..Default::default()
        },
        Module::Other(label) => MappingSpec {
            filename: label.to_string(),
            ..Default::default()
        },
    };
    let mapping = b.mapping(&spec);
    let frames: Vec<FrameSpec<'_>> = loc
        .frames
        .iter()
        .map(|f| FrameSpec {
            name: &f.function,
            filename: f.file.as_deref().unwrap_or(""),
            line: i64::from(f.line),
        })
        .collect();
    b.location(mapping, loc.address, &frames)
}

pub fn comm_str(comm: &[u8]) -> &str {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    std::str::from_utf8(&comm[..end]).unwrap_or("?")
}

/// Folded format separates frames with ';' and ends with " count".
fn sanitize(name: &str) -> String {
    name.replace(';', ":").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::SampleKey;

    fn kernel_sample(addr: u64) -> RawSample {
        RawSample {
            key: SampleKey {
                tgid: 1,
                tid: 1,
                user_stack: 0,
                kernel_stack_id: 0,
                flags: 0,
                comm: *b"kworker\0\0\0\0\0\0\0\0\0",
                go_labels: 0,
                python_stack: 0,
            },
            count: 3,
            user: Vec::new(),
            kernel: vec![addr],
            go_labels: None,
            python: None,
        }
    }

    #[test]
    fn deferred_kernel_frames_are_named_once_resolved() {
        let mut procs = ProcessTable::default();
        let mut sym = Symbolizer::new(100);
        let mut agg = Aggregate::deferring_kernel();
        agg.add(
            &[kernel_sample(0xffff_ffff_8100_0000)],
            &mut procs,
            &mut sym,
        );
        assert_eq!(agg.total, 3);
        assert!(agg.locations[0].frames.is_empty(), "named before resolve");
        agg.resolve_kernel(&mut sym);
        let name = &agg.locations[0].frames[0].function;
        // Named from kallsyms as root, or as an address when it is hidden.
        assert!(name.ends_with(crate::symbolize::KERNEL_SUFFIX), "{name}");

        let mut direct = Aggregate::default();
        direct.add(
            &[kernel_sample(0xffff_ffff_8100_0000)],
            &mut procs,
            &mut sym,
        );
        assert_eq!(direct.locations[0].frames, agg.locations[0].frames);
    }
}
