//! Puts a sample's Python frames into its native stack where the interpreter ran them.
//!
//! Every activation of `_PyEval_EvalFrameDefault` runs a run of Python frames: from the
//! innermost up to and including the frame it entered with (`is_entry`). Split at the
//! entry frames, the Python frames form one group per activation, in the same order as
//! the activations in the native stack; each activation is replaced by its group, and the
//! native frames between them (C extensions, the interpreter's own calls) stay where they
//! are.
//!
//! Alignment: a complete native stack and complete Python stack are matched from the root
//! (an activation that has not linked its frame yet, or already unlinked it, can only be
//! the innermost one, and keeps its native name). When either is truncated, the root end
//! is unknown, so they are matched from the leaf, and Python groups left over (callers
//! whose native frames were not unwound) go at the root end, before the `[truncated]`
//! marker. Stacks that cannot be matched (more groups than activations in a complete
//! native stack) are not merged.

use profiler_common::python::{PyFrame, PY_FRAME_ENTRY};

/// One frame of a merged stack, leaf first: an index into the native or Python frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merged {
    Native(usize),
    Python(usize),
}

/// `is_eval[i]`: native frame `i` (leaf first) is an interpreter activation;
/// `native_truncated`: the native stack's last frame is the `[truncated]` marker.
/// None when the two cannot be matched.
pub fn merge(
    is_eval: &[bool],
    native_truncated: bool,
    python: &[PyFrame],
    python_truncated: bool,
) -> Option<Vec<Merged>> {
    // Groups, leaf first, as index ranges of `python`.
    let mut groups = Vec::new();
    let mut start = 0;
    for (i, f) in python.iter().enumerate() {
        if f.instr & PY_FRAME_ENTRY != 0 {
            groups.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < python.len() {
        groups.push(start..python.len());
    }
    let activations: Vec<usize> = (0..is_eval.len()).filter(|&i| is_eval[i]).collect();
    let (a, g) = (activations.len(), groups.len());
    let mut assigned = vec![None; is_eval.len()];
    let mut leftover = 0..0;
    if is_eval.is_empty() {
        leftover = 0..g;
    } else if !native_truncated && !python_truncated {
        if g > a {
            return None;
        }
        for k in 0..g {
            assigned[activations[a - 1 - k]] = Some(g - 1 - k);
        }
    } else {
        if g > a && !native_truncated {
            return None;
        }
        for k in 0..g.min(a) {
            assigned[activations[k]] = Some(k);
        }
        leftover = a.min(g)..g;
    }

    let mut out = Vec::with_capacity(is_eval.len() + python.len());
    let push_group = |out: &mut Vec<Merged>, k: usize| {
        out.extend(groups[k].clone().map(Merged::Python));
    };
    let root_marker = native_truncated && !is_eval.is_empty();
    let body = if root_marker {
        is_eval.len() - 1
    } else {
        is_eval.len()
    };
    for (i, group) in assigned.iter().enumerate().take(body) {
        match group {
            Some(k) => push_group(&mut out, *k),
            None => out.push(Merged::Native(i)),
        }
    }
    for k in leftover {
        push_group(&mut out, k);
    }
    if root_marker {
        out.push(Merged::Native(is_eval.len() - 1));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Merged::{Native as N, Python as P};

    fn frames(entries: &[bool]) -> Vec<PyFrame> {
        entries
            .iter()
            .enumerate()
            .map(|(i, &e)| PyFrame {
                code: i as u64 + 1,
                tag: 0,
                instr: if e { PY_FRAME_ENTRY } else { 0 },
            })
            .collect()
    }

    #[test]
    fn each_activation_is_replaced_by_its_frames() {
        // native, leaf first: [C hash fn, eval (inner), C call, eval (outer), main]
        let is_eval = [false, true, false, true, false];
        // Python, leaf first: inner activation runs 0,1 (1 entry); outer runs 2,3,4.
        let py = frames(&[false, true, false, false, true]);
        assert_eq!(
            merge(&is_eval, false, &py, false).unwrap(),
            vec![N(0), P(0), P(1), N(2), P(2), P(3), P(4), N(4)]
        );
    }

    #[test]
    fn an_activation_without_frames_yet_keeps_its_native_name() {
        // The innermost activation has not linked its entry frame yet.
        let is_eval = [true, false, true, false];
        let py = frames(&[false, true]);
        assert_eq!(
            merge(&is_eval, false, &py, false).unwrap(),
            vec![N(0), N(1), P(0), P(1), N(3)]
        );
    }

    #[test]
    fn truncated_native_stacks_get_the_callers_before_the_marker() {
        // [eval, C, eval, [truncated]]: three groups, the outermost without activation.
        let is_eval = [true, false, true, false];
        let py = frames(&[true, true, false, true]);
        assert_eq!(
            merge(&is_eval, true, &py, false).unwrap(),
            vec![P(0), N(1), P(1), P(2), P(3), N(3)]
        );
    }

    #[test]
    fn truncated_python_stacks_match_from_the_leaf() {
        let is_eval = [true, false, true, false];
        // Only the innermost frames were read: the inner group and part of the outer.
        let py = frames(&[true, false]);
        assert_eq!(
            merge(&is_eval, false, &py, true).unwrap(),
            vec![P(0), N(1), P(1), N(3)]
        );
    }

    #[test]
    fn more_groups_than_activations_do_not_merge() {
        let py = frames(&[true, true]);
        assert_eq!(merge(&[true, false], false, &py, false), None);
        assert_eq!(merge(&[false], false, &py, false), None);
    }

    #[test]
    fn without_a_native_stack_the_python_frames_stand_alone() {
        let py = frames(&[false, true]);
        assert_eq!(merge(&[], false, &py, false).unwrap(), vec![P(0), P(1)]);
    }
}
