//! Where CPython keeps what Kiln reads, by version: byte offsets taken from CPython's own
//! headers (`Include/internal/pycore_runtime.h`, `pycore_frame.h`, `cpython/pystate.h`,
//! `cpython/code.h`, `cpython/frameobject.h`, `cpython/unicodeobject.h`; 3.8's
//! `internal/pycore_pystate.h`, `code.h`, `frameobject.h`) for x86_64 (3.8 to 3.12), or from the `_Py_DebugOffsets` the interpreter publishes (3.13), and checked
//! against the headers by tests that compile `offsetof` of each field with each installed
//! interpreter's headers.

use profiler_common::python::PY_CODE_TAG_BYTES;

/// Offsets of one CPython minor version (x86_64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub version: (u32, u32),
    /// `_PyRuntime.gilstate.autoTSSkey` (3.8 to 3.11), `_PyRuntime.autoTSSkey` (3.12): the
    /// `Py_tss_t` holding the pthread key of the thread's state (`_key` at 4, after
    /// `_is_initialized`).
    pub runtime_tss: u64,
    /// `PyThreadState.cframe` (3.11, 3.12; None from 3.13 on).
    pub tstate_cframe: Option<u32>,
    /// `_PyCFrame.current_frame`, or `PyThreadState.current_frame` from 3.13 on.
    pub current_frame: u32,
    /// `_PyInterpreterFrame.f_code` (3.13: `f_executable`), `.previous`, `.prev_instr`
    /// (3.13: `instr_ptr`).
    /// Up to 3.10: `PyFrameObject.f_code`, `.f_back`, `tstate.frame` as `current_frame`.
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_prev_instr: u32,
    /// Up to 3.10: `PyFrameObject.f_lasti` and the bytes per unit it counts (3.10: code
    /// units of 2 bytes; 3.8, 3.9: bytes); the instruction is then not a pointer.
    pub frame_lasti: Option<(u32, u32)>,
    /// How an activation's entry frame is marked: 3.11 `is_entry`, 3.12 a shim frame
    /// whose `owner` is `FRAME_OWNED_BY_CSTACK` below it; up to 3.10 every frame has its
    /// own activation.
    pub entry: EntryMark,
    /// How `co_linetable` (`co_lnotab` in 3.8 and 3.9) maps offsets to lines.
    pub lines: LineFormat,
    /// Where the bytes hashed into a frame's tag start (they end with `co_qualname`).
    pub code_tag_offset: u32,
    /// `PyCodeObject.co_firstlineno`, `co_filename`, `co_qualname`, `co_linetable`,
    /// `co_code_adaptive` (the bytecode `prev_instr` points into).
    pub code_first_line: u32,
    pub code_filename: u32,
    pub code_qualname: u32,
    pub code_linetable: u32,
    pub code_bytecode: u32,
    /// `PyASCIIObject.state`; the data of a compact ASCII string (`sizeof(PyASCIIObject)`)
    /// and of another compact string (`sizeof(PyCompactUnicodeObject)`).
    pub unicode_state: u32,
    pub unicode_ascii_data: u32,
    pub unicode_compact_data: u32,
    /// `PyVarObject.ob_size` and `PyBytesObject.ob_sval`.
    pub var_size: u32,
    pub bytes_data: u32,
}

/// The line table format of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// 3.11+ location table.
    Locations,
    /// 3.10 `co_linetable`: (byte delta, signed line delta) pairs.
    Linetable310,
    /// 3.8 and 3.9 `co_lnotab`: (byte delta, signed line delta) pairs, deltas applied before.
    Lnotab,
}

/// How a version marks the first frame of an interpreter activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMark {
    /// `_PyInterpreterFrame.is_entry` at this offset.
    IsEntry(u32),
    /// A shim frame whose `owner` (at this offset) is this value sits below the entry
    /// frame.
    ShimOwner(u32, u8),
    /// Every frame is its own activation (up to 3.10).
    EveryFrame,
}

const PY311: Layout = Layout {
    version: (3, 11),
    runtime_tss: 592,
    tstate_cframe: Some(56),
    current_frame: 8,
    frame_code: 32,
    frame_previous: 48,
    frame_prev_instr: 56,
    frame_lasti: None,
    entry: EntryMark::IsEntry(68),
    lines: LineFormat::Locations,
    code_tag_offset: 72,
    code_first_line: 72,
    code_filename: 112,
    code_qualname: 128,
    code_linetable: 136,
    code_bytecode: 184,
    unicode_state: 32,
    unicode_ascii_data: 48,
    unicode_compact_data: 72,
    var_size: 16,
    bytes_data: 32,
};

const PY312: Layout = Layout {
    version: (3, 12),
    runtime_tss: 1544,
    tstate_cframe: Some(56),
    current_frame: 0,
    frame_code: 0,
    frame_previous: 8,
    frame_prev_instr: 56,
    frame_lasti: None,
    // FRAME_OWNED_BY_CSTACK
    entry: EntryMark::ShimOwner(70, 3),
    lines: LineFormat::Locations,
    code_tag_offset: 72,
    code_first_line: 68,
    code_filename: 112,
    code_qualname: 128,
    code_linetable: 136,
    code_bytecode: 192,
    unicode_state: 32,
    unicode_ascii_data: 40,
    unicode_compact_data: 56,
    var_size: 16,
    bytes_data: 32,
};

/// 3.8 to 3.10 (`Include/cpython/frameobject.h`, `cpython/code.h`,
/// `internal/pycore_runtime.h`; 3.8: `internal/pycore_pystate.h`): frame objects linked by
/// `f_back`, one interpreter activation each; no qualname (`co_name` instead). Only where
/// `_PyRuntime` keeps the TLS key and how `f_lasti` counts differ between them.
const fn frame_objects(
    version: (u32, u32),
    runtime_tss: u64,
    lasti: u32,
    scale: u32,
    lines: LineFormat,
) -> Layout {
    Layout {
        version,
        runtime_tss,
        tstate_cframe: None,
        current_frame: 24,
        frame_code: 32,
        frame_previous: 24,
        frame_prev_instr: 0,
        frame_lasti: Some((lasti, scale)),
        entry: EntryMark::EveryFrame,
        lines,
        // co_code .. co_name: the code's objects and its file and name.
        code_tag_offset: 120 - PY_CODE_TAG_BYTES as u32,
        code_first_line: 40,
        code_filename: 104,
        code_qualname: 112,
        code_linetable: 120,
        code_bytecode: 0,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        var_size: 16,
        bytes_data: 32,
    }
}

// 3.8's `_PyRuntimeState` keeps more before `gilstate` (its `interpreters`, `xidregistry`
// and finalization state) than 3.9's.
const PY38: Layout = frame_objects((3, 8), 1392, 104, 1, LineFormat::Lnotab);
const PY39: Layout = frame_objects((3, 9), 584, 104, 1, LineFormat::Lnotab);
const PY310: Layout = frame_objects((3, 10), 584, 96, 2, LineFormat::Linetable310);

/// Bytes of `_Py_DebugOffsets` (3.13) read from the start of `_PyRuntime`.
pub const DEBUG_OFFSETS_BYTES: u64 = 73 * 8;

/// The layout of CPython 3.13 from the `_Py_DebugOffsets` the interpreter publishes at
/// the start of `_PyRuntime` (`Include/internal/pycore_runtime.h`), read from the
/// binary's initialized data; the few fields it does not publish come from the 3.13
/// headers. None for another layout of that struct (another version, a free-threaded
/// build, no cookie).
pub fn from_debug_offsets(version: (u32, u32), bytes: &[u8]) -> Option<Layout> {
    if version != (3, 13) || bytes.get(..8)? != b"xdebugpy" {
        return None;
    }
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    let field = |i: usize| -> Option<u32> { u32::try_from(word(i)?).ok() };
    let hex = word(1)?;
    if (hex >> 24, (hex >> 16) & 0xff) != (3, 13) || word(2)? != 0 {
        return None;
    }
    // Indices of the u64 fields in 3.13's `_Py_DebugOffsets`.
    let qualname = field(37)?;
    Some(Layout {
        version,
        // Not published; `_PyRuntimeState.autoTSSkey` in the 3.13 headers.
        runtime_tss: 2160,
        tstate_cframe: None,
        current_frame: field(23)?,
        frame_code: field(30)?,
        frame_previous: field(29)?,
        frame_prev_instr: field(31)?,
        frame_lasti: None,
        // FRAME_OWNED_BY_CSTACK
        entry: EntryMark::ShimOwner(field(33)?, 3),
        lines: LineFormat::Locations,
        code_tag_offset: (qualname + 8).checked_sub(PY_CODE_TAG_BYTES as u32)?,
        code_first_line: field(39)?,
        code_filename: field(35)?,
        code_qualname: qualname,
        code_linetable: field(38)?,
        code_bytecode: field(43)?,
        unicode_state: field(68)?,
        unicode_ascii_data: field(70)?,
        // sizeof(PyCompactUnicodeObject), not published.
        unicode_compact_data: 56,
        var_size: field(65)?,
        bytes_data: field(66)?,
    })
}

/// The layout of CPython `major.minor` up to 3.12, if Kiln has one (3.13: see
/// [`from_debug_offsets`]).
pub fn layout(version: (u32, u32)) -> Option<&'static Layout> {
    match version {
        (3, 8) => Some(&PY38),
        (3, 9) => Some(&PY39),
        (3, 10) => Some(&PY310),
        (3, 11) => Some(&PY311),
        (3, 12) => Some(&PY312),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The include directory of an installed interpreter, from its own sysconfig.
    fn include_dir(python: &str) -> Option<String> {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['include'])",
            ])
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        // 3.8 keeps `_PyRuntimeState` in pycore_pystate.h.
        let internal = std::path::Path::new(&dir).join("internal");
        (internal.join("pycore_runtime.h").exists() || internal.join("pycore_pystate.h").exists())
            .then_some(dir)
    }

    /// Compiles `offsetof` of every field the layout names against the interpreter's own
    /// headers (Py_BUILD_CORE exposes the internal structs) and compares.
    fn check_against_headers(python: &str, layout: &Layout) {
        let include = include_dir(python).unwrap_or_else(|| {
            panic!("{python} with its headers (Debian: python3.11-dev) is needed for this test")
        });
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("offsets.c");
        std::fs::write(
            &src,
            r#"
#define Py_BUILD_CORE 1
#include <Python.h>
#if PY_MINOR_VERSION >= 11
#include <internal/pycore_frame.h>
#else
#include <frameobject.h>
#endif
#if PY_MINOR_VERSION >= 9
#include <internal/pycore_runtime.h>
#else
#include <internal/pycore_pystate.h>
#endif
#include <stddef.h>
#include <stdio.h>
int main(void) {
#if PY_MINOR_VERSION <= 10
    size_t tss = offsetof(_PyRuntimeState, gilstate.autoTSSkey);
    size_t entry = 0;
    int shim_owner = 0;
    size_t cframe = 0;
    size_t current_frame = offsetof(PyThreadState, frame);
    size_t code = offsetof(PyFrameObject, f_code);
    size_t previous = offsetof(PyFrameObject, f_back);
    size_t instr = offsetof(PyFrameObject, f_lasti);
    size_t name = offsetof(PyCodeObject, co_name);
#if PY_MINOR_VERSION == 10
    size_t linetable = offsetof(PyCodeObject, co_linetable);
#else
    size_t linetable = offsetof(PyCodeObject, co_lnotab);
#endif
    size_t bytecode = 0;
#else
    size_t previous = offsetof(_PyInterpreterFrame, previous);
    size_t name = offsetof(PyCodeObject, co_qualname);
    size_t linetable = offsetof(PyCodeObject, co_linetable);
    size_t bytecode = offsetof(PyCodeObject, co_code_adaptive);
#endif
#if PY_MINOR_VERSION == 11
    size_t tss = offsetof(_PyRuntimeState, gilstate.autoTSSkey);
    size_t entry = offsetof(_PyInterpreterFrame, is_entry);
    int shim_owner = 0;
#elif PY_MINOR_VERSION >= 12
    size_t tss = offsetof(_PyRuntimeState, autoTSSkey);
    size_t entry = offsetof(_PyInterpreterFrame, owner);
    int shim_owner = FRAME_OWNED_BY_CSTACK;
#endif
#if PY_MINOR_VERSION == 11 || PY_MINOR_VERSION == 12
    size_t cframe = offsetof(PyThreadState, cframe);
    size_t current_frame = offsetof(_PyCFrame, current_frame);
    size_t code = offsetof(_PyInterpreterFrame, f_code);
    size_t instr = offsetof(_PyInterpreterFrame, prev_instr);
#elif PY_MINOR_VERSION >= 13
    size_t cframe = 0;
    size_t current_frame = offsetof(PyThreadState, current_frame);
    size_t code = offsetof(_PyInterpreterFrame, f_executable);
    size_t instr = offsetof(_PyInterpreterFrame, instr_ptr);
#endif
    printf("%zu %zu %zu %zu %zu %zu %zu %d %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n",
        tss + 1000 * offsetof(Py_tss_t, _key),
        cframe,
        current_frame,
        code,
        previous,
        instr,
        entry,
        shim_owner,
        name + sizeof(PyObject *) - PY_CODE_TAG_BYTES,
        offsetof(PyCodeObject, co_firstlineno),
        offsetof(PyCodeObject, co_filename),
        name,
        linetable,
        bytecode,
        offsetof(PyASCIIObject, state),
        sizeof(PyASCIIObject),
        sizeof(PyCompactUnicodeObject),
        offsetof(PyVarObject, ob_size),
        offsetof(PyBytesObject, ob_sval));
    return 0;
}
"#,
        )
        .unwrap();
        let exe = dir.path().join("offsets");
        let status = std::process::Command::new("cc")
            .arg(format!("-I{include}"))
            .arg(format!(
                "-DPY_CODE_TAG_BYTES={}",
                profiler_common::python::PY_CODE_TAG_BYTES
            ))
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap();
        assert!(status.success(), "compiling against {include} failed");
        let out = std::process::Command::new(&exe).output().unwrap();
        let got: Vec<u64> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let l = layout;
        let (entry, shim_owner) = match l.entry {
            EntryMark::IsEntry(off) => (off, 0),
            EntryMark::ShimOwner(off, owner) => (off, owner),
            EntryMark::EveryFrame => (0, 0),
        };
        let expected = [
            l.runtime_tss + 1000 * 4,
            l.tstate_cframe.unwrap_or(0).into(),
            l.current_frame.into(),
            l.frame_code.into(),
            l.frame_previous.into(),
            l.frame_lasti
                .map_or(l.frame_prev_instr, |(off, _)| off)
                .into(),
            entry.into(),
            shim_owner.into(),
            l.code_tag_offset.into(),
            l.code_first_line.into(),
            l.code_filename.into(),
            l.code_qualname.into(),
            l.code_linetable.into(),
            l.code_bytecode.into(),
            l.unicode_state.into(),
            l.unicode_ascii_data.into(),
            l.unicode_compact_data.into(),
            l.var_size.into(),
            l.bytes_data.into(),
        ];
        assert_eq!(got, expected, "{python}'s headers disagree with the layout");
    }

    #[test]
    fn python_3_11_layout_matches_its_headers() {
        check_against_headers("/usr/bin/python3.11", layout((3, 11)).unwrap());
        // pyenv's build of another 3.11 patch release, where installed.
        let pyenv = "/root/.pyenv/versions/3.11.7/bin/python3.11";
        if std::path::Path::new(pyenv).exists() {
            check_against_headers(pyenv, layout((3, 11)).unwrap());
        }
    }

    #[test]
    fn python_3_8_to_3_10_layouts_match_their_headers() {
        for (python, version) in [
            ("/root/.pyenv/versions/3.8.18/bin/python3.8", (3, 8)),
            ("/root/.pyenv/versions/3.9.18/bin/python3.9", (3, 9)),
            ("/root/.pyenv/versions/3.10.13/bin/python3.10", (3, 10)),
        ] {
            let missing = format!("{python} is not installed (pyenv)");
            if kiln_testkit::skip_unless(std::path::Path::new(python).exists(), python, &missing) {
                continue;
            }
            check_against_headers(python, layout(version).unwrap());
        }
    }

    #[test]
    fn python_3_12_layout_matches_its_headers() {
        // Debian 12 ships no 3.12: pyenv's build, where installed.
        let pyenv = "/root/.pyenv/versions/3.12.1/bin/python3.12";
        let missing = format!("{pyenv} is not installed (pyenv)");
        if kiln_testkit::skip_unless(std::path::Path::new(pyenv).exists(), pyenv, &missing) {
            return;
        }
        check_against_headers(pyenv, layout((3, 12)).unwrap());
    }

    /// 3.13's layout as its `_Py_DebugOffsets` publish it (read from the library's
    /// initialized `_PyRuntime`, as detection does) agrees with its headers.
    #[test]
    fn python_3_13_debug_offsets_match_its_headers() {
        use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
        let root = "/root/.pyenv/versions/3.13.0";
        let lib = format!("{root}/lib/libpython3.13.so.1.0");
        let missing = format!("{lib} is not installed (pyenv)");
        if kiln_testkit::skip_unless(std::path::Path::new(&lib).exists(), &lib, &missing) {
            return;
        }
        let data = std::fs::read(&lib).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let runtime = file
            .dynamic_symbols()
            .find(|s| s.name() == Ok("_PyRuntime"))
            .unwrap();
        let section = file
            .section_by_index(runtime.section_index().unwrap())
            .unwrap();
        let start = (runtime.address() - section.address()) as usize;
        let bytes = &section.data().unwrap()[start..start + DEBUG_OFFSETS_BYTES as usize];
        let layout = from_debug_offsets((3, 13), bytes).expect("3.13 debug offsets");
        check_against_headers(&format!("{root}/bin/python3.13"), &layout);
        assert!(from_debug_offsets((3, 14), bytes).is_none());
    }

    #[test]
    fn unknown_versions_have_no_layout() {
        assert!(layout((3, 7)).is_none());
        assert!(layout((3, 14)).is_none());
    }
}
