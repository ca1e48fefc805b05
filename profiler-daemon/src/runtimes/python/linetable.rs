//! CPython 3.11+ location tables (`co_linetable`, `Objects/locations.md`): the line of an
//! instruction offset.
//!
//! Each entry covers 1-8 code units: a first byte `1cccclll` (code, length - 1) and,
//! by code, column data (0-9: one byte; 10-12: two bytes, line delta = code - 10),
//! a signed varint line delta (13), a signed varint line delta plus three varints (14),
//! or nothing (15: no location). Varints are 6-bit chunks, bit 6 = more.

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
    /// jumps in line numbers and multi-line expressions: the line of each range that the
    /// real interpreter's `co_lines()` reports must be what the decoder finds.
    #[test]
    fn lines_match_the_interpreters_own_co_lines() {
        let script = r#"
import sys
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
        if hasattr(k, "co_lines"):
            yield from walk(k)
for c in walk(code):
    ranges = ";".join(f"{s},{e},{-1 if l is None else l}" for s, e, l in c.co_lines())
    print(c.co_linetable.hex(), c.co_firstlineno, ranges)
"#;
        let out = std::process::Command::new("/usr/bin/python3.11")
            .args(["-c", script])
            .output()
            .expect("python3.11 runs (the tests need Debian's python3.11)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut ranges = 0;
        for row in text.lines() {
            let mut parts = row.split(' ');
            let hex = parts.next().unwrap();
            let table: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let first: i32 = parts.next().unwrap().parse().unwrap();
            for r in parts
                .next()
                .unwrap_or("")
                .split(';')
                .filter(|r| !r.is_empty())
            {
                let v: Vec<i64> = r.split(',').map(|x| x.parse().unwrap()).collect();
                let expected = (v[2] > 0).then_some(v[2] as u32);
                for offset in (v[0]..v[1]).step_by(2) {
                    assert_eq!(
                        line_at(&table, first, offset as u32),
                        expected,
                        "offset {offset} of a code object starting at line {first}"
                    );
                }
                ranges += 1;
            }
        }
        assert!(ranges > 20, "only {ranges} ranges checked");
    }

    #[test]
    fn malformed_tables_give_no_line() {
        assert_eq!(line_at(&[], 1, 0), None);
        assert_eq!(line_at(&[0x01], 1, 0), None);
        // A long-form entry cut short.
        assert_eq!(line_at(&[0xf0, 0x40], 1, 0), None);
    }
}
