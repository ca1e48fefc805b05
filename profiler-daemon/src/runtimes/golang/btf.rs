//! The offset of `task_struct.thread.fsbase` from the kernel's BTF, so the BPF side can
//! find a thread's TLS base. A small walker: aya-obj keeps its BTF type lookup private.

const BTF_KIND_INT: u32 = 1;
const BTF_KIND_ARRAY: u32 = 3;
const BTF_KIND_STRUCT: u32 = 4;
const BTF_KIND_UNION: u32 = 5;
const BTF_KIND_ENUM: u32 = 6;
const BTF_KIND_FUNC_PROTO: u32 = 13;
const BTF_KIND_VAR: u32 = 14;
const BTF_KIND_DATASEC: u32 = 15;
const BTF_KIND_DECL_TAG: u32 = 17;
const BTF_KIND_ENUM64: u32 = 19;

struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

struct Type {
    name: u32,
    kind: u32,
    members: Vec<Member>,
}

/// Byte offset of `task_struct.thread.fsbase`, from `/sys/kernel/btf/vmlinux`.
pub fn fsbase_offset() -> Option<u64> {
    let data = std::fs::read("/sys/kernel/btf/vmlinux").ok()?;
    fsbase_offset_in(&data)
}

fn fsbase_offset_in(data: &[u8]) -> Option<u64> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    if data.get(..2)? != [0x9f, 0xeb] {
        return None;
    }
    let hdr_len = u32_at(4)? as usize;
    let type_off = hdr_len + u32_at(8)? as usize;
    let type_len = u32_at(12)? as usize;
    let str_off = hdr_len + u32_at(16)? as usize;
    let name = |off: u32| -> Option<&[u8]> {
        let s = data.get(str_off + off as usize..)?;
        Some(&s[..s.iter().position(|&b| b == 0)?])
    };

    // Type ids start at 1.
    let mut types: Vec<Type> = vec![Type {
        name: 0,
        kind: 0,
        members: vec![],
    }];
    let mut at = type_off;
    while at + 12 <= type_off + type_len {
        let name_off = u32_at(at)?;
        let info = u32_at(at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31 == 1;
        at += 12;
        let mut members = Vec::new();
        let extra = match kind {
            BTF_KIND_INT | BTF_KIND_VAR | BTF_KIND_DECL_TAG => 4,
            BTF_KIND_ARRAY => 12,
            BTF_KIND_STRUCT | BTF_KIND_UNION => {
                for i in 0..vlen {
                    let m = at + i * 12;
                    let offset = u32_at(m + 8)?;
                    members.push(Member {
                        name: u32_at(m)?,
                        ty: u32_at(m + 4)?,
                        bit_offset: if kind_flag {
                            offset & 0xff_ffff
                        } else {
                            offset
                        },
                    });
                }
                vlen * 12
            }
            BTF_KIND_ENUM | BTF_KIND_FUNC_PROTO => vlen * 8,
            BTF_KIND_DATASEC | BTF_KIND_ENUM64 => vlen * 12,
            _ => 0,
        };
        at += extra;
        types.push(Type {
            name: name_off,
            kind,
            members,
        });
    }

    let find_struct = |wanted: &[u8]| {
        types
            .iter()
            .find(|t| t.kind == BTF_KIND_STRUCT && name(t.name) == Some(wanted))
    };
    let member = |t: &Type, wanted: &[u8]| {
        t.members
            .iter()
            .find(|m| name(m.name) == Some(wanted))
            .map(|m| (m.ty, u64::from(m.bit_offset / 8)))
    };
    let task = find_struct(b"task_struct")?;
    let (thread_ty, thread_off) = member(task, b"thread")?;
    let thread = types.get(thread_ty as usize)?;
    let (_, fsbase_off) = member(thread, b"fsbase")?;
    Some(thread_off + fsbase_off)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_fsbase_in_this_kernel() {
        match super::fsbase_offset() {
            Some(off) => assert!(off > 1000 && off < 20_000, "implausible offset {off}"),
            None => assert!(
                !std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
                "BTF present but task_struct.thread.fsbase not found"
            ),
        }
    }
}
