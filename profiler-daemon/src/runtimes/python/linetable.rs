//! Line tables of code objects: the line of an instruction offset. 3.11+ location tables
//! (`co_linetable`, `Objects/locations.md`), 3.10's `co_linetable` and 3.8's and 3.9's `co_lnotab`
//! (`Objects/lnotab_notes.txt`).
//!
//! The 3.11+ format:
//! Each entry covers 1-8 code units: a first byte `1cccclll` (code, length - 1) and,
//! by code, column data (0-9: one byte; 10-12: two bytes, line delta = code - 10),
//! a signed varint line delta (13), a signed varint line delta plus three varints (14),
//! or nothing (15: no location). Varints are 6-bit chunks, bit 6 = more.

use super::layout::LineFormat;

/// The line of the instruction at byte offset `offset` in a table of `format`.
pub fn line(format: LineFormat, table: &[u8], first_line: i32, offset: u32) -> Option<u32> {
    match format {
        LineFormat::Locations => line_at(table, first_line, offset),
        LineFormat::Linetable310 => line_at_310(table, first_line, offset),
        LineFormat::Lnotab => line_at_lnotab(table, first_line, offset),
    }
}

/// 3.10: (byte delta, signed line delta) pairs; each pair is a range from the end of the
/// last one; a line delta of -128 means the range has no line (`PyLineTable_*` in
/// `Objects/codeobject.c`).
fn line_at_310(table: &[u8], first_line: i32, offset: u32) -> Option<u32> {
    let mut line = first_line;
    let mut end = 0u32;
    for pair in table.chunks_exact(2) {
        let start = end;
        end += u32::from(pair[0]);
        let delta = pair[1] as i8;
        let current = if delta == -128 {
            None
        } else {
            line += i32::from(delta);
            Some(line)
        };
        if (start..end).contains(&offset) {
            return current.filter(|l| *l > 0).map(|l| l as u32);
        }
    }
    None
}

/// 3.8, 3.9: (byte delta, signed line delta) pairs, the line delta applying from the offset
/// the byte deltas reach (`PyCode_Addr2Line`).
fn line_at_lnotab(table: &[u8], first_line: i32, offset: u32) -> Option<u32> {
    let mut line = first_line;
    let mut addr = 0u32;
    for pair in table.chunks_exact(2) {
        addr += u32::from(pair[0]);
        if addr > offset {
            break;
        }
        line += i32::from(pair[1] as i8);
    }
    (line > 0).then_some(line as u32)
}

/// The line of the code unit at byte offset `offset` of a code object's bytecode, or None
/// if the table gives it no line (or is malformed, or ends before it).
pub fn line_at(table: &[u8], first_line: i32, offset: u32) -> Option<u32> {
    let target = offset / 2;
    let mut line = first_line;
    let mut unit = 0u32;
    let mut bytes = table.iter().copied();
    while let Some(first) = bytes.next() {
        if first & 0x80 == 0 {
            return None;
        }
        let code = (first >> 3) & 15;
        let len = u32::from(first & 7) + 1;
        let (delta, has_line) = match code {
            15 => (0, false),
            14 => {
                let delta = signed_varint(&mut bytes)?;
                for _ in 0..3 {
                    varint(&mut bytes)?;
                }
                (delta, true)
            }
            13 => (signed_varint(&mut bytes)?, true),
            10..=12 => {
                bytes.next()?;
                bytes.next()?;
                (i32::from(code) - 10, true)
            }
            _ => {
                bytes.next()?;
                (0, true)
            }
        };
        line = line.wrapping_add(delta);
        if target < unit + len {
            return (has_line && line > 0).then_some(line as u32);
        }
        unit += len;
    }
    None
}

fn varint(bytes: &mut impl Iterator<Item = u8>) -> Option<u32> {
    let mut read = bytes.next()?;
    let mut value = u32::from(read & 63);
    let mut shift = 0;
    while read & 64 != 0 {
        read = bytes.next()?;
        shift += 6;
        if shift > 30 {
            return None;
        }
        value |= u32::from(read & 63) << shift;
    }
    Some(value)
}

fn signed_varint(bytes: &mut impl Iterator<Item = u8>) -> Option<i32> {
    let v = varint(bytes)?;
    Some(if v & 1 != 0 {
        -((v >> 1) as i32)
    } else {
        (v >> 1) as i32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code object of a source file with branches, loops, comprehensions, long
    /// jumps in line numbers and multi-line expressions: the line of every instruction
    /// offset, as the real interpreter reports it (`co_lines()`, or `dis.findlinestarts`
    /// before 3.10), must be what the decoder finds in the interpreter's own table.
    fn check_lines(python: &str, format: LineFormat) {
        let script = r#"
import dis
src = '''
def f(a, b):
    x = [i * i for i in range(a)
         if i % 2]
    for i in range(b):
        if i > 3:
            x.append(
                i
            )
        else:
            pass
    try:
        y = 1 / a
    except ZeroDivisionError:
        y = 0
    return x, y
''' + "\n" * 300 + '''
class K:
    def g(self):
        return lambda q: (q +
                          1)
'''
code = compile(src, "t.py", "exec")
def walk(c):
    yield c
    for k in c.co_consts:
        if hasattr(k, "co_code"):
            yield from walk(k)
def lines(c):
    if hasattr(c, "co_lines"):
        for s, e, l in c.co_lines():
            for off in range(s, e, 2):
                yield off, -1 if l is None else l
    else:
        starts = list(dis.findlinestarts(c))
        for off in range(0, len(c.co_code), 2):
            yield off, [l for s, l in starts if s <= off][-1]
for c in walk(code):
    table = c.co_linetable if hasattr(c, "co_linetable") else c.co_lnotab
    pairs = ";".join(f"{o},{l}" for o, l in lines(c))
    print(table.hex(), c.co_firstlineno, pairs)
"#;
        let out = std::process::Command::new(python)
            .args(["-c", script])
            .output()
            .unwrap_or_else(|e| panic!("{python}: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut checked = 0;
        for row in text.lines() {
            let mut parts = row.split(' ');
            let hex = parts.next().unwrap();
            let table: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let first: i32 = parts.next().unwrap().parse().unwrap();
            for pair in parts
                .next()
                .unwrap_or("")
                .split(';')
                .filter(|r| !r.is_empty())
            {
                let (offset, l) = pair.split_once(',').unwrap();
                let (offset, l): (u32, i64) = (offset.parse().unwrap(), l.parse().unwrap());
                let expected = (l > 0).then_some(l as u32);
                assert_eq!(
                    line(format, &table, first, offset),
                    expected,
                    "{python}: offset {offset} of a code object starting at line {first}"
                );
                checked += 1;
            }
        }
        assert!(checked > 50, "{python}: only {checked} offsets checked");
    }

    #[test]
    fn lines_match_the_interpreters_own() {
        check_lines("/usr/bin/python3.11", LineFormat::Locations);
        // Other versions from pyenv, where installed (Debian 12 has only 3.11).
        for (python, format) in [
            (
                "/root/.pyenv/versions/3.8.18/bin/python3.8",
                LineFormat::Lnotab,
            ),
            (
                "/root/.pyenv/versions/3.9.18/bin/python3.9",
                LineFormat::Lnotab,
            ),
            (
                "/root/.pyenv/versions/3.10.13/bin/python3.10",
                LineFormat::Linetable310,
            ),
            (
                "/root/.pyenv/versions/3.12.1/bin/python3.12",
                LineFormat::Locations,
            ),
            (
                "/root/.pyenv/versions/3.13.0/bin/python3.13",
                LineFormat::Locations,
            ),
        ] {
            let missing = format!("{python} is not installed (pyenv)");
            if !kiln_testkit::skip_unless(std::path::Path::new(python).exists(), python, &missing) {
                check_lines(python, format);
            }
        }
    }

    #[test]
    fn malformed_tables_give_no_line() {
        assert_eq!(line_at(&[], 1, 0), None);
        assert_eq!(line_at(&[0x01], 1, 0), None);
        // A long-form entry cut short.
        assert_eq!(line_at(&[0xf0, 0x40], 1, 0), None);
    }
}
