//! What Kiln knows about the processes it samples: their executable mappings and the
//! binaries behind them, captured while the process lives so that samples drained after
//! it exits still symbolize.
//!
//! Binaries are identified by (device, inode) from /proc/<pid>/maps and kept open, so a
//! binary that is replaced, deleted, or lives in another mount namespace (a container)
//! stays readable for as long as a process we track maps it.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::fd::AsRawFd,
    path::PathBuf,
    sync::Arc,
};

/// Index into [`Binaries`].
pub type BinaryId = u32;

#[derive(Debug)]
pub struct Binary {
    /// Path as the process saw it (inside its mount namespace).
    pub path: Arc<str>,
    /// File name of `path`, for frames we cannot symbolize.
    pub name: Arc<str>,
    pub build_id: Option<String>,
    file: File,
}

impl Binary {
    #[cfg(test)]
    pub fn open(path: &str) -> std::io::Result<Self> {
        Ok(Self {
            path: path.into(),
            name: path.rsplit('/').next().unwrap_or(path).into(),
            build_id: None,
            file: File::open(path)?,
        })
    }

    /// A path through which this process can read the binary, however it was reached.
    pub fn open_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

#[derive(Clone, Debug)]
pub struct ExecMapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    /// None for anonymous or special mappings ([vdso], JIT code).
    pub binary: Option<BinaryId>,
    pub label: Arc<str>,
}

#[derive(Debug)]
pub struct Process {
    /// Name of the thread-group leader (`/proc/<pid>/comm`).
    pub comm: Arc<str>,
    /// Executable mappings sorted by start address.
    pub mappings: Vec<ExecMapping>,
    pub exited: bool,
    /// When it was (re)captured, in captures: the oldest go first at the cap.
    captured_seq: u64,
    /// The drain (see [`ProcessTable::next_drain`]) in which it was last captured.
    captured_drain: u64,
}

impl Process {
    pub fn mapping_for(&self, addr: u64) -> Option<&ExecMapping> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }
}

/// Open binaries. Ids are never reused, so caches keyed by id cannot go stale.
#[derive(Default)]
pub struct Binaries {
    by_file: HashMap<(u64, u64), BinaryId>,
    entries: HashMap<BinaryId, Binary>,
    next_id: BinaryId,
}

impl Binaries {
    pub fn get(&self, id: BinaryId) -> Option<&Binary> {
        self.entries.get(&id)
    }

    pub fn len(&self) -> usize {
        self.by_file.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_file.is_empty()
    }

    fn intern(&mut self, dev: u64, inode: u64, pid: u32, map: &MapsLine<'_>) -> Option<BinaryId> {
        if let Some(&id) = self.by_file.get(&(dev, inode)) {
            return Some(id);
        }
        // map_files works for deleted files and other mount namespaces; fall back to the
        // path as the process sees it.
        let file = File::open(format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            map.start, map.end
        ))
        .or_else(|_| File::open(format!("/proc/{pid}/root{}", map.path)))
        .ok()?;
        let path: Arc<str> = map.path.trim_end_matches(" (deleted)").into();
        let name: Arc<str> = path.rsplit('/').next().unwrap_or(&path).into();
        let mut binary = Binary {
            path,
            name,
            build_id: None,
            file,
        };
        binary.build_id = blazesym::helper::read_elf_build_id(&binary.open_path())
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(id, binary);
        self.by_file.insert((dev, inode), id);
        Some(id)
    }

    /// Closes every binary not in `live` and returns them, so caches can forget them.
    fn retain(&mut self, live: &HashSet<BinaryId>) -> Vec<(BinaryId, Binary)> {
        self.by_file.retain(|_, id| live.contains(id));
        let dead: Vec<BinaryId> = self
            .entries
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        dead.into_iter()
            .filter_map(|id| self.entries.remove(&id).map(|b| (id, b)))
            .collect()
    }
}

/// Default cap of [`ProcessTable`]: far above the processes a host runs at once (the
/// benchmark's largest cell has 5,000), small enough to bound memory (~2 KB each) when
/// exit events are lost.
pub const MAX_PROCESSES: usize = 16_384;

/// Processes seen in samples, their mappings, and the binaries they share.
///
/// Capped: a process is forgotten when its exit is drained, but exit events can be lost
/// (a full ring buffer), and a table without a cap would then grow with every pid the
/// host ever ran. At the cap, processes that no longer exist go first, then the eighth
/// captured longest ago (they are captured again on their next sample); both counted in
/// [`ProcessTable::evicted`].
pub struct ProcessTable {
    processes: HashMap<u32, Process>,
    pub binaries: Binaries,
    /// Processes that could not be read (gone before we looked).
    pub capture_failures: u64,
    /// Processes (re)captured since the last [`ProcessTable::take_captured`], for the
    /// unwind loader.
    captured: Vec<u32>,
    cap: usize,
    next_seq: u64,
    /// Processes dropped because the table was full, since creation.
    pub evicted: u64,
    /// Pids evicted since the last [`ProcessTable::take_evicted`], for the caches keyed by
    /// pid (unwind slots, Python code names).
    evicted_pids: Vec<u32>,
    /// An eviction may have left binaries no process maps: close them at the next
    /// [`ProcessTable::evict_exited`].
    binaries_unreferenced: bool,
    /// Drains so far; a process is re-read for an unknown address once per drain.
    drain: u64,
    /// Re-reads for an unknown address skipped because the process was read in the same
    /// drain already.
    pub recaptures_skipped: u64,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::with_cap(MAX_PROCESSES)
    }
}

impl ProcessTable {
    pub fn with_cap(cap: usize) -> Self {
        Self {
            processes: HashMap::new(),
            binaries: Binaries::default(),
            capture_failures: 0,
            captured: Vec::new(),
            cap: cap.max(1),
            next_seq: 0,
            evicted: 0,
            evicted_pids: Vec::new(),
            binaries_unreferenced: false,
            drain: 0,
            recaptures_skipped: 0,
        }
    }

    /// Starts a new drain: each process may be re-read once more for an address its
    /// captured mappings do not cover.
    pub fn next_drain(&mut self) {
        self.drain += 1;
    }

    /// Re-reads `pid`'s mappings because a sample holds an address none of them covers
    /// (code mapped since: dlopen, JIT), at most once per drain: a program without frame
    /// pointers yields garbage return addresses on every sample, and re-reading the maps
    /// of a big process for each would cost more than the whole drain.
    pub fn recapture_for_unknown_address(&mut self, pid: u32) -> bool {
        match self.processes.get(&pid) {
            Some(p) if p.exited => false,
            Some(p) if p.captured_drain == self.drain => {
                self.recaptures_skipped += 1;
                false
            }
            _ => self.capture(pid),
        }
    }

    /// Makes room for one more process: first forgets processes that are gone (their
    /// exit was missed), then, if that freed nothing, the eighth captured longest ago.
    fn make_room(&mut self) {
        let gone: Vec<u32> = self
            .processes
            .keys()
            .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            .copied()
            .collect();
        let victims = if gone.is_empty() {
            let mut by_age: Vec<(u64, u32)> = self
                .processes
                .iter()
                .map(|(pid, p)| (p.captured_seq, *pid))
                .collect();
            by_age.sort_unstable();
            by_age
                .into_iter()
                .take((self.cap / 8).max(1))
                .map(|(_, pid)| pid)
                .collect()
        } else {
            gone
        };
        log::debug!(
            "process table full ({} processes): forgetting {}",
            self.processes.len(),
            victims.len()
        );
        for pid in victims {
            self.processes.remove(&pid);
            self.evicted += 1;
            self.evicted_pids.push(pid);
        }
        self.binaries_unreferenced = true;
    }

    /// Pids evicted (not exited) since the last call.
    pub fn take_evicted(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.evicted_pids)
    }

    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.processes.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.processes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Reads (or re-reads) a process's mappings. Returns false if it is gone, or if it
    /// is exiting and was captured before: its maps are empty once its memory is
    /// released, while samples taken during its exit still need the mappings it had.
    pub fn capture(&mut self, pid: u32) -> bool {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            self.capture_failures += 1;
            return false;
        };
        let mut mappings = Vec::new();
        for line in maps.lines() {
            let Some(m) = MapsLine::parse(line) else {
                continue;
            };
            if !m.executable {
                continue;
            }
            let binary = if m.inode != 0 && m.path.starts_with('/') {
                self.binaries.intern(m.dev, m.inode, pid, &m)
            } else {
                None
            };
            let label: Arc<str> = if m.path.is_empty() {
                "[anon]".into()
            } else {
                m.path.rsplit('/').next().unwrap_or(m.path).into()
            };
            mappings.push(ExecMapping {
                start: m.start,
                end: m.end,
                file_offset: m.offset,
                binary,
                label,
            });
        }
        mappings.sort_by_key(|m| m.start);
        if mappings.is_empty() && self.processes.contains_key(&pid) {
            // Every live user process maps code; none left means it is exiting (a
            // sample after its exit event announces it again).
            log::debug!("pid {pid}: no executable mappings left; keeping the captured ones");
            return false;
        }
        let comm: Arc<str> = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default()
            .into();
        log::debug!(
            "pid {pid}: captured {} executable mappings ({comm})",
            mappings.len()
        );
        if !self.processes.contains_key(&pid) && self.processes.len() >= self.cap {
            self.make_room();
        }
        let unchanged = self.processes.get(&pid).is_some_and(|p| {
            p.mappings.len() == mappings.len()
                && p.mappings.iter().zip(&mappings).all(|(a, b)| {
                    (a.start, a.end, a.file_offset, a.binary)
                        == (b.start, b.end, b.file_offset, b.binary)
                })
        });
        // The unwind loader needs a process again only if its code moved.
        if !unchanged {
            self.captured.push(pid);
        }
        self.next_seq += 1;
        self.processes.insert(
            pid,
            Process {
                comm,
                mappings,
                exited: false,
                captured_seq: self.next_seq,
                captured_drain: self.drain,
            },
        );
        true
    }

    /// Whether `pid`'s executable mappings differ from the captured ones (false if it is
    /// gone or was never captured).
    pub fn mappings_changed(&self, pid: u32) -> bool {
        let Some(process) = self.processes.get(&pid) else {
            return false;
        };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return false;
        };
        let mut now: Vec<(u64, u64)> = maps
            .lines()
            .filter_map(MapsLine::parse)
            .filter(|m| m.executable)
            .map(|m| (m.start, m.end))
            .collect();
        now.sort_unstable();
        !now.iter()
            .copied()
            .eq(process.mappings.iter().map(|m| (m.start, m.end)))
    }

    /// Pids captured since the last call.
    pub fn take_captured(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.captured)
    }

    /// Captures `pid` unless already known.
    pub fn ensure(&mut self, pid: u32) -> Option<&Process> {
        if !self.processes.contains_key(&pid) && !self.capture(pid) {
            return None;
        }
        self.processes.get(&pid)
    }

    /// The process replaced its image: its old mappings no longer apply.
    pub fn exec(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }

    pub fn mark_exited(&mut self, pid: u32) {
        if let Some(p) = self.processes.get_mut(&pid) {
            p.exited = true;
        }
    }

    /// Forgets processes that exited (once their samples are drained) and closes the
    /// binaries that no remaining process maps, returning those.
    pub fn evict_exited(&mut self, exited: &[u32]) -> Vec<(BinaryId, Binary)> {
        for pid in exited {
            self.processes.remove(pid);
        }
        if exited.is_empty() && !std::mem::take(&mut self.binaries_unreferenced) {
            return Vec::new();
        }
        let live: HashSet<BinaryId> = self
            .processes
            .values()
            .flat_map(|p| p.mappings.iter().filter_map(|m| m.binary))
            .collect();
        self.binaries.retain(&live)
    }
}

/// One line of /proc/<pid>/maps.
struct MapsLine<'a> {
    start: u64,
    end: u64,
    executable: bool,
    offset: u64,
    dev: u64,
    inode: u64,
    path: &'a str,
}

impl<'a> MapsLine<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?;
        let offset = fields.next()?;
        let (major, minor) = fields.next()?.split_once(':')?;
        let inode = fields.next()?;
        let path = fields.next().unwrap_or("").trim_start();
        let major = u64::from_str_radix(major, 16).ok()?;
        let minor = u64::from_str_radix(minor, 16).ok()?;
        Some(Self {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            executable: perms.as_bytes().get(2) == Some(&b'x'),
            offset: u64::from_str_radix(offset, 16).ok()?,
            dev: (major << 32) | minor,
            inode: inode.parse().ok()?,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = MapsLine::parse(
            "7f1c2a000000-7f1c2a1c5000 r-xp 00028000 fe:01 1835   /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f1c2a000000);
        assert_eq!(m.offset, 0x28000);
        assert!(m.executable);
        assert_eq!(m.dev, (0xfe << 32) | 1);
        assert_eq!(m.inode, 1835);
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        let anon = MapsLine::parse("7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]").unwrap();
        assert_eq!(anon.path, "[vdso]");
        assert_eq!(anon.inode, 0);
    }

    #[test]
    fn captures_own_process_and_finds_a_mapping() {
        let mut table = ProcessTable::default();
        let pid = std::process::id();
        assert!(table.ensure(pid).is_some(), "own process readable");
        let addr = captures_own_process_and_finds_a_mapping as *const () as u64;
        let m = table
            .get(pid)
            .unwrap()
            .mapping_for(addr)
            .expect("own code is mapped")
            .clone();
        let bin = table.binaries.get(m.binary.unwrap()).unwrap();
        assert!(std::fs::metadata(bin.open_path()).is_ok());
        assert!(table.ensure(u32::MAX - 1).is_none());
    }

    #[test]
    fn an_exited_process_keeps_the_mappings_captured_while_it_lived() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut table = ProcessTable::default();
        assert!(table.capture(pid));
        let lived = table.get(pid).unwrap().mappings.len();
        assert!(lived > 0, "a live process maps code");
        // Killed but not reaped: a zombie, whose maps are empty, like a process whose
        // memory is gone while it exits.
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|maps| !maps.is_empty())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "pid {pid} did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            !table.capture(pid),
            "an empty capture replaced the mappings"
        );
        assert_eq!(table.get(pid).unwrap().mappings.len(), lived);
        child.wait().unwrap();
    }

    #[test]
    fn notices_an_executable_mapping_added_after_capture() {
        let pid = std::process::id();
        let mut table = ProcessTable::default();
        assert!(table.capture(pid));
        assert!(!table.mappings_changed(pid));
        // SAFETY: a fresh anonymous mapping, unmapped below; nothing else refers to it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let changed = table.mappings_changed(pid);
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(addr, 4096) };
        assert!(changed, "a new executable mapping went unnoticed");
        assert!(
            !table.mappings_changed(u32::MAX),
            "an unknown pid is not a change"
        );
    }

    #[test]
    fn a_full_table_forgets_the_gone_first_then_the_oldest_and_counts_them() {
        let mut children: Vec<std::process::Child> = (0..6)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        let mut table = ProcessTable::with_cap(4);
        for &pid in &pids[..4] {
            assert!(table.capture(pid));
        }
        assert_eq!(table.len(), 4);
        // One of them is gone without an exit event: it makes room first.
        children[1].kill().unwrap();
        children[1].wait().unwrap();
        assert!(table.capture(pids[4]));
        assert_eq!(table.len(), 4);
        assert!(table.get(pids[1]).is_none(), "the gone process stayed");
        assert!(table.get(pids[0]).is_some(), "a live process went first");
        assert_eq!(table.evicted, 1);
        // All alive: the oldest capture goes (an eighth of the cap, at least one).
        assert!(table.capture(pids[5]));
        assert_eq!(table.len(), 4);
        assert!(table.get(pids[0]).is_none(), "the oldest capture stayed");
        assert_eq!(table.evicted, 2);
        assert_eq!(table.take_evicted(), vec![pids[1], pids[0]]);
        // Re-capturing a known process is no growth and evicts nothing.
        assert!(table.capture(pids[5]));
        assert_eq!(table.evicted, 2);
        // Binaries only evicted processes mapped are closed at the next drain; `sleep`'s
        // are still mapped by the others, so none closes here.
        assert!(table.evict_exited(&[]).is_empty());
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    #[test]
    fn an_unknown_address_rereads_a_process_once_per_drain() {
        let pid = std::process::id();
        let mut table = ProcessTable::default();
        assert!(table.capture(pid));
        assert_eq!(table.take_captured(), vec![pid]);
        // Read in this drain already: not again.
        assert!(!table.recapture_for_unknown_address(pid));
        assert_eq!(table.recaptures_skipped, 1);
        table.next_drain();
        assert!(table.recapture_for_unknown_address(pid));
        assert!(!table.recapture_for_unknown_address(pid));
        assert_eq!(table.recaptures_skipped, 2);
        // Unchanged mappings: the unwind loader is not asked again.
        assert!(table.take_captured().is_empty());
    }
}
