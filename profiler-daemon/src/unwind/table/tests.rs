//! Tables compiled from real binaries of this machine, checked row by row against
//! binutils' own interpretation of the same CFI (`readelf --debug-dump=frames-interp`).

use std::{collections::HashMap, path::Path, process::Command};

use super::*;

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

/// What readelf says one row of one FDE means.
#[derive(Debug)]
struct Expected {
    loc: u64,
    cfa: String,
    rbp: String,
    ra: String,
}

/// Rows of every `.eh_frame` and `.debug_frame` FDE in `readelf -wF` output, with whether
/// its CIE marks a signal trampoline.
fn readelf_rows(path: &Path) -> Vec<(bool, Expected)> {
    let out = Command::new("readelf")
        .arg("-wF")
        .arg(path)
        .output()
        .expect("readelf (binutils) is installed");
    // readelf exits 1 for mere warnings (e.g. a missing separate debug file).
    assert!(!out.stdout.is_empty(), "readelf printed nothing");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut signal_cies: HashMap<String, bool> = HashMap::new();
    let mut rows = Vec::new();
    let mut in_fde = false;
    let mut signal = false;
    let mut columns: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("Contents of the .debug_frame") {
            // CIE offsets are per section.
            signal_cies.clear();
            in_fde = false;
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 4 && words[3] == "CIE" {
            in_fde = false;
            let aug = words.get(4).copied().unwrap_or("");
            signal_cies.insert(words[0].to_owned(), aug.contains('S'));
            continue;
        }
        if words.len() >= 5 && words[3] == "FDE" {
            in_fde = true;
            let cie = words[4].trim_start_matches("cie=");
            signal = signal_cies.get(cie).copied().unwrap_or(false);
            continue;
        }
        if words.first() == Some(&"LOC") {
            columns = words.iter().map(|s| s.to_string()).collect();
            continue;
        }
        if !in_fde || words.len() != columns.len() || words[0].len() != 16 {
            continue;
        }
        // Address 0: a .debug_frame FDE of code the linker discarded.
        let Some(loc) = u64::from_str_radix(words[0], 16).ok().filter(|&l| l != 0) else {
            continue;
        };
        let col = |name: &str| {
            columns
                .iter()
                .position(|c| c == name)
                .map_or("u".to_owned(), |i| words[i].to_owned())
        };
        rows.push((
            signal,
            Expected {
                loc,
                cfa: col("CFA"),
                rbp: col("rbp"),
                ra: col("ra"),
            },
        ));
    }
    rows
}

/// Checks every readelf row against the compiled table; returns (rows checked,
/// mismatches).
fn compare(path: &Path) -> (usize, Vec<String>) {
    let table = compile_file(path).unwrap().expect("binary has CFI");
    let rows = readelf_rows(path);
    let mut mismatches = Vec::new();
    for (signal, e) in &rows {
        let got = *table
            .lookup(e.loc)
            .unwrap_or_else(|| panic!("no row for {:#x} in {}", e.loc, path.display()));
        let ok = if *signal {
            got.kind == row_kind::SIGNAL
        } else if e.ra == "u" {
            got.kind == row_kind::END
        } else if e.ra != "c-8" {
            got.kind == row_kind::UNSUPPORTED
        } else {
            let rbp = match e.rbp.as_str() {
                "u" | "s" => Some(0),
                c => c
                    .strip_prefix("c-")
                    .and_then(|n| n.parse::<i64>().ok())
                    .filter(|n| n % 8 == 0 && *n <= 1024)
                    .map(|n| -(n / 8) as i8),
            };
            let cfa = |prefix: &str| {
                e.cfa
                    .strip_prefix(prefix)
                    .and_then(|n| n.parse::<u16>().ok())
            };
            match (rbp, cfa("rsp+"), cfa("rbp+")) {
                (None, _, _) => got.kind == row_kind::UNSUPPORTED,
                (Some(rbp), Some(off), _) => {
                    got.kind == row_kind::CFA_RSP && got.cfa_offset == off && got.rbp_offset == rbp
                }
                (Some(rbp), None, Some(off)) => {
                    got.kind == row_kind::CFA_RBP && got.cfa_offset == off && got.rbp_offset == rbp
                }
                // "exp" (PLT or another expression) or another register.
                (Some(_), None, None) => {
                    got.kind == row_kind::UNSUPPORTED || e.cfa == "exp" && got.kind == row_kind::PLT
                }
            }
        };
        if !ok {
            mismatches.push(format!("{:#x}: readelf {e:?}, compiled {got:?}", e.loc));
        }
    }
    (rows.len(), mismatches)
}

fn assert_agrees(path: &Path, min_rows: usize) -> UnwindTable {
    let (checked, mismatches) = compare(path);
    assert!(
        checked >= min_rows,
        "only {checked} readelf rows for {}",
        path.display()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {checked} rows of {} disagree with readelf, e.g.:\n{}",
        mismatches.len(),
        path.display(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
    compile_file(path).unwrap().unwrap()
}

const C_SOURCE: &str = r#"
#include <alloca.h>
#include <string.h>
#include <stdio.h>
__attribute__((noinline)) long leaf(long x) { return x * 3 + 1; }
__attribute__((noinline)) long with_alloca(long n) {
    char *p = alloca(n);
    memset(p, 1, n);
    return leaf(p[n / 2]) + n;
}
__attribute__((noinline)) long saves(long a, long b, long c) {
    long r = 0;
    for (long i = 0; i < a; i++) r += with_alloca(16 + (i & 7)) * b + c;
    return r;
}
int main(int argc, char **argv) { printf("%ld\n", saves(argc + 10, 2, 3)); return 0; }
"#;

const RUST_SOURCE: &str = r#"
#[inline(never)]
fn work(v: &mut Vec<u64>, n: u64) -> u64 {
    for i in 0..n { v.push(i * i); }
    v.iter().sum()
}
fn main() {
    let mut v = Vec::new();
    let n = std::env::args().count() as u64 * 1000;
    println!("{}", work(&mut v, n));
}
"#;

fn build(dir: &Path, name: &str, cmd: &mut Command) -> std::path::PathBuf {
    let out = dir.join(name);
    let status = cmd.arg("-o").arg(&out).status().expect("compiler runs");
    assert!(status.success(), "building {name} failed");
    out
}

/// `C_SOURCE` built by gcc with `flags` in `dir`.
fn build_c(dir: &Path, flags: &[&str]) -> std::path::PathBuf {
    let src = dir.join("t.c");
    std::fs::write(&src, C_SOURCE).unwrap();
    build(dir, "t", Command::new("gcc").args(flags).arg(&src))
}

#[test]
fn libc_agrees_with_readelf() {
    let table = assert_agrees(Path::new(LIBC), 20_000);
    // __restore_rt is described as a signal frame; _start-like entry points end stacks.
    assert!(table.stats.signal_fdes >= 1, "{:?}", table.stats);
    assert!(table.rows.iter().any(|r| r.kind == row_kind::END));
    assert!(!table.segments.is_empty());
}

#[test]
fn optimized_c_binary_agrees_with_readelf() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), &["-O2", "-fomit-frame-pointer", "-g"]);
    let table = assert_agrees(&exe, 10);
    // alloca forces an rbp-based CFA with rbp saved at CFA-16.
    assert!(
        table
            .rows
            .iter()
            .any(|r| r.kind == row_kind::CFA_RBP && r.cfa_offset == 16 && r.rbp_offset == -2),
        "{:?}",
        table.rows
    );
    // The PLT is described by the well-known expression.
    assert!(table.stats.plt_rows >= 1, "{:?}", table.stats);
    // .debug_frame is not emitted by gcc on x86_64 unless asked; .eh_frame is used.
    assert!(table.stats.eh_frame_fdes >= 4);
}

#[test]
fn debug_frame_of_code_without_eh_frame_agrees_with_readelf() {
    let dir = tempfile::tempdir().unwrap();
    // Our code gets .debug_frame only; the C runtime's objects bring .eh_frame: both
    // sections are read and merged by address.
    let exe = build_c(
        dir.path(),
        &[
            "-O2",
            "-fomit-frame-pointer",
            "-g",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
        ],
    );
    let table = assert_agrees(&exe, 10);
    assert!(table.stats.debug_frame_fdes >= 4, "{:?}", table.stats);
    assert!(table.stats.eh_frame_fdes >= 1, "{:?}", table.stats);
}

#[test]
fn rust_release_binary_agrees_with_readelf() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("r.rs");
    std::fs::write(&src, RUST_SOURCE).unwrap();
    let exe = build(
        dir.path(),
        "r",
        Command::new("rustc")
            .args(["-O", "-C", "force-frame-pointers=no", "--edition", "2021"])
            .arg(&src),
    );
    let table = assert_agrees(&exe, 500);
    assert!(table.rows.len() > 100);
}

#[test]
fn python_agrees_with_readelf() {
    let python = Path::new("/usr/bin/python3.11");
    let missing = format!("no {} (Debian python3.11)", python.display());
    if kiln_testkit::skip_unless(python.exists(), "python_agrees_with_readelf", &missing) {
        return;
    }
    assert_agrees(python, 10_000);
}

#[test]
fn bias_maps_addresses_to_rows() {
    let table = compile_file(Path::new(LIBC)).unwrap().unwrap();
    let seg = table.segments[0];
    // A mapping of the executable segment at a typical load address.
    let start = 0x7f00_0000_0000 + (seg.vaddr & !0xfff);
    let file_offset = seg.file_offset & !0xfff;
    let bias = table.bias_for(start, file_offset).unwrap();
    let vaddr = table.base + u64::from(table.rows[10].pc);
    let addr = start + (vaddr - (seg.vaddr & !0xfff));
    assert_eq!(addr.wrapping_sub(bias), u64::from(table.rows[10].pc));
    assert!(table.bias_for(start, 1 << 40).is_none());
}

#[test]
fn plt_expression_is_recognized() {
    let plt = [0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22];
    assert_eq!(plt_expression(&plt), Some((8, 11)));
    let mut other = plt;
    other[5] = 0x1b;
    assert_eq!(plt_expression(&other), None);
    assert_eq!(plt_expression(&[0x77, 8, 0x06]), None);
}

#[test]
fn rules_merge_and_replace() {
    let a = Rule {
        kind: row_kind::CFA_RSP,
        cfa_offset: 8,
        rbp_offset: 0,
    };
    let b = Rule {
        kind: row_kind::CFA_RSP,
        cfa_offset: 16,
        rbp_offset: 0,
    };
    let mut rules = Vec::new();
    push_rule(&mut rules, 0x10, a);
    push_rule(&mut rules, 0x11, a);
    push_rule(&mut rules, 0x12, b);
    push_rule(&mut rules, 0x12, a); // same pc: replaces b, then merges into the first a
    push_rule(&mut rules, 0x20, GAP);
    let got: Vec<(u32, u8, u16)> = rules.iter().map(|r| (r.pc, r.kind, r.cfa_offset)).collect();
    assert_eq!(got, vec![(0x10, a.kind, 8), (0x20, GAP.kind, 0)]);
}

#[test]
fn a_file_without_cfi_has_no_table() {
    // /proc/self/exe has CFI; an ELF without .eh_frame: strip it from a copy.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("n.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let exe = build(
        dir.path(),
        "n",
        Command::new("gcc")
            .args([
                "-O2",
                "-fno-asynchronous-unwind-tables",
                "-fno-unwind-tables",
                "-nostartfiles",
                "-e",
                "main",
                "-static-pie",
                "-nostdlib",
            ])
            .arg(&src),
    );
    let _ = Command::new("objcopy")
        .args(["-R", ".eh_frame", "-R", ".eh_frame_hdr"])
        .arg(&exe)
        .status();
    assert!(compile_file(&exe).unwrap().is_none());
}

/// Table build time and size of this machine's big binaries, for docs/benchmarks.md:
/// `cargo test -p profiler-daemon --release --bin kiln unwind_table_sizes -- --ignored --nocapture`
#[test]
#[ignore]
fn unwind_table_sizes() {
    let kiln = std::env::current_exe().unwrap();
    for path in [
        Path::new(LIBC),
        Path::new("/usr/bin/python3.11"),
        Path::new("/usr/lib/go-1.19/bin/go"),
        kiln.as_path(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/release/kiln")
            .as_path(),
    ] {
        if !path.exists() {
            continue;
        }
        let started = std::time::Instant::now();
        let table = compile_file(path).unwrap();
        let took = started.elapsed();
        match table {
            Some(t) => eprintln!(
                "{}: {} FDEs (+{} .debug_frame), {} CFI rows -> {} rows, {:.1} KiB, {:.1} ms",
                path.display(),
                t.stats.eh_frame_fdes,
                t.stats.debug_frame_fdes,
                t.stats.cfi_rows,
                t.rows.len(),
                t.bytes() as f64 / 1024.0,
                took.as_secs_f64() * 1e3
            ),
            None => eprintln!(
                "{}: no CFI ({:.1} ms)",
                path.display(),
                took.as_secs_f64() * 1e3
            ),
        }
    }
}
