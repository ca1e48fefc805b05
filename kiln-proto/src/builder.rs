//! Builds a pprof [`Profile`] while deduplicating everything pprof lets us share.

use std::collections::HashMap;

use crate::pprof::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// What identifies a mapping: the same binary seen in two processes is one mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MappingSpec {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: String,
    pub build_id: String,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
    pub has_inline_frames: bool,
}

/// One frame of a location: a function and, when known, its source line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrameSpec<'a> {
    pub name: &'a str,
    pub filename: &'a str,
    pub line: i64,
}

#[derive(Default)]
pub struct ProfileBuilder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64), u64>,
    mappings: HashMap<MappingSpec, u64>,
    locations: HashMap<(u64, u64, Vec<Line>), u64>,
    samples: HashMap<(Vec<u64>, Vec<Label>), usize>,
}

impl ProfileBuilder {
    /// `sample_types` are `(type, unit)` pairs, e.g. `[("samples","count"),
    /// ("cpu","nanoseconds")]`; every sample then carries one value per type.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: i64) -> Self {
        let mut b = ProfileBuilder::default();
        b.string("");
        let types = sample_types
            .iter()
            .map(|(t, u)| b.value_type(t, u))
            .collect();
        b.profile.sample_type = types;
        b.profile.period_type = Some(b.value_type(period_type.0, period_type.1));
        b.profile.period = period;
        b
    }

    fn value_type(&mut self, ty: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.string(ty),
            unit: self.string(unit),
        }
    }

    pub fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    pub fn function(&mut self, name: &str, filename: &str) -> u64 {
        let key = (self.string(name), self.string(filename));
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        self.profile.function.push(Function {
            id,
            name: key.0,
            system_name: key.0,
            filename: key.1,
            start_line: 0,
        });
        self.functions.insert(key, id);
        id
    }

    pub fn mapping(&mut self, spec: &MappingSpec) -> u64 {
        if let Some(&id) = self.mappings.get(spec) {
            return id;
        }
        let id = self.profile.mapping.len() as u64 + 1;
        let filename = self.string(&spec.filename);
        let build_id = self.string(&spec.build_id);
        self.profile.mapping.push(Mapping {
            id,
            memory_start: spec.memory_start,
            memory_limit: spec.memory_limit,
            file_offset: spec.file_offset,
            filename,
            build_id,
            has_functions: spec.has_functions,
            has_filenames: spec.has_filenames,
            has_line_numbers: spec.has_line_numbers,
            has_inline_frames: spec.has_inline_frames,
        });
        self.mappings.insert(spec.clone(), id);
        id
    }

    /// A location at `address` in mapping `mapping_id` (0: none). `frames` lists the
    /// innermost inlined function first, as pprof wants.
    pub fn location(&mut self, mapping_id: u64, address: u64, frames: &[FrameSpec<'_>]) -> u64 {
        let lines: Vec<Line> = frames
            .iter()
            .map(|f| Line {
                function_id: self.function(f.name, f.filename),
                line: f.line,
                column: 0,
            })
            .collect();
        let key = (mapping_id, address, lines);
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(Location {
            id,
            mapping_id,
            address,
            line: key.2.clone(),
            is_folded: false,
        });
        self.locations.insert(key, id);
        id
    }

    /// Adds `values` to the sample with these locations (leaf first) and string labels,
    /// creating it if it is new.
    pub fn add_sample(&mut self, locations: &[u64], values: &[i64], labels: &[(&str, &str)]) {
        let mut label: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label {
                key: self.string(k),
                str: self.string(v),
                num: 0,
                num_unit: 0,
            })
            .collect();
        label.sort_by_key(|l| (l.key, l.str));
        let key = (locations.to_vec(), label);
        if let Some(&i) = self.samples.get(&key) {
            for (acc, v) in self.profile.sample[i].value.iter_mut().zip(values) {
                *acc += v;
            }
            return;
        }
        self.samples.insert(key.clone(), self.profile.sample.len());
        self.profile.sample.push(Sample {
            location_id: key.0,
            value: values.to_vec(),
            label: key.1,
        });
    }

    pub fn set_time(&mut self, time_nanos: i64, duration_nanos: i64) {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
    }

    pub fn add_comment(&mut self, comment: &str) {
        let i = self.string(comment);
        self.profile.comment.push(i);
    }

    pub fn sample_count(&self) -> usize {
        self.profile.sample.len()
    }

    pub fn build(self) -> Profile {
        self.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    #[test]
    fn deduplicates_and_merges_samples() {
        let mut b = ProfileBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 10);
        let m = b.mapping(&MappingSpec {
            filename: "/bin/x".into(),
            ..Default::default()
        });
        let f = FrameSpec {
            name: "main",
            filename: "x.c",
            line: 3,
        };
        let l1 = b.location(m, 0x10, std::slice::from_ref(&f));
        let l2 = b.location(m, 0x10, std::slice::from_ref(&f));
        assert_eq!(l1, l2);
        b.add_sample(&[l1], &[2], &[("pid", "1")]);
        b.add_sample(&[l1], &[3], &[("pid", "1")]);
        b.add_sample(&[l1], &[1], &[("pid", "2")]);
        let p = b.build();
        validate(&p).unwrap();
        assert_eq!(p.sample.len(), 2);
        assert_eq!(p.sample[0].value, vec![5]);
        assert_eq!(p.function.len(), 1);
        assert_eq!(p.string_table[0], "");
    }
}
