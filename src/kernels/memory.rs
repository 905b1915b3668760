//! Which bytes a call reads and writes, and whether two arrays may share one: the guard behind
//! `out=` (the binding layer's `arrays` module turns its answers into Python errors).
//!
//! Two arrays share memory when some element of one and some element of the other occupy the
//! same byte of physical memory. That happens through the same virtual addresses (a view, an
//! alias through `np.frombuffer`, a memoryview, `ctypes`), and through two virtual ranges that
//! map the same pages of one file (two `np.memmap`s or `mmap.mmap`s of a file, a `memfd` or
//! shared memory mapped twice). [`Region`] answers the first, [`FilePiece`] the second: on
//! Linux the kernel tells which file (device and inode) and which offset each mapping of an
//! address range shows ([`file_pieces`]); ranges that map the same offsets of the same file
//! are compared as if they were one address range.
//!
//! [`Claims`] records what every running call reads and writes, so that a call writing an
//! `out` is refused while another call reads or writes any of its bytes (and the other way
//! round), whatever object each call reached that memory through. The claims are cleared in a
//! child after `fork()` (the threads that held them do not exist there), by the handlers of
//! [`super::pool`].

use super::pool::{self, ForkLock};

/// Greatest common divisor (`gcd(0, n) = n`).
fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The bytes an array's elements occupy, as address arithmetic: element `i` (a multi-index)
/// starts at `ptr + Σ i_d · stride_d` and has `itemsize` bytes. Kept: the span `lo..hi` of
/// all those bytes, and `step`, the greatest common divisor of the byte strides of the
/// dimensions longer than 1 (0 for a single element): every element starts at `ptr` plus a
/// multiple of `step`. Addresses are `i128` so that file offsets ([`FilePiece`]) fit too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub ptr: i128,
    pub lo: i128,
    pub hi: i128,
    pub step: u128,
    pub itemsize: u128,
}

impl Region {
    /// The region of an array whose element at index 0 is at `ptr`, of `shape` with byte
    /// strides `strides` and elements of `itemsize` bytes; `None` for an empty array.
    pub fn of(ptr: usize, shape: &[usize], strides: &[isize], itemsize: usize) -> Option<Region> {
        if shape.contains(&0) {
            return None;
        }
        let ptr = ptr as i128;
        let (mut lo, mut hi, mut step) = (ptr, ptr, 0u128);
        for (&n, &s) in shape.iter().zip(strides) {
            if n <= 1 {
                continue;
            }
            let reach = s as i128 * (n as i128 - 1);
            if reach < 0 {
                lo += reach;
            } else {
                hi += reach;
            }
            step = gcd(step, s.unsigned_abs() as u128);
        }
        Some(Region {
            ptr,
            lo,
            hi: hi + itemsize as i128,
            step,
            itemsize: itemsize.max(1) as u128,
        })
    }

    /// False only if no byte of an element of `self` is a byte of an element of `other`.
    ///
    /// Sound (never false for arrays that share a byte) and exact for what slicing makes of
    /// one buffer: disjoint spans share nothing; otherwise, every element of either starts at
    /// its `ptr` plus a multiple of `g = gcd(step, other.step)`, so their bytes cover the
    /// residues `ptr mod g .. ptr mod g + itemsize` modulo `g`, and arrays whose residues do
    /// not meet (`a[0::2]` and `a[1::2]`) share nothing. Other cases count as shared.
    pub fn may_share(&self, other: &Region) -> bool {
        if !(self.lo < other.hi && other.lo < self.hi) {
            return false;
        }
        let g = gcd(self.step, other.step);
        if g == 0 || self.itemsize >= g || other.itemsize >= g {
            return true;
        }
        let g_i = g as i128;
        // Where `other`'s residues start, counted from `self`'s, modulo g.
        let d = (other.ptr - self.ptr).rem_euclid(g_i) as u128;
        d < self.itemsize || d + other.itemsize > g
    }

    /// This region with its addresses moved by `by` bytes.
    fn shifted(&self, by: i128) -> Region {
        Region {
            ptr: self.ptr + by,
            lo: self.lo + by,
            hi: self.hi + by,
            ..*self
        }
    }
}

/// The part of a [`Region`] that lies in one mapping of a file, in the file's own addresses
/// (byte offsets): what the region's elements there show of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilePiece {
    /// The file: device and inode number.
    pub dev: u64,
    pub inode: u64,
    /// A shared mapping (`MAP_SHARED`): writes through it reach the file, so every other
    /// mapping of those bytes sees them. Writes through a private mapping stay private.
    pub shared: bool,
    /// The region in file offsets, its span cut to what this mapping covers.
    pub region: Region,
}

impl FilePiece {
    /// True if `self` and `other` show the same file and may share a byte of it.
    pub fn may_share(&self, other: &FilePiece) -> bool {
        self.dev == other.dev && self.inode == other.inode && self.region.may_share(&other.region)
    }
}

/// True if some piece of `writer` in a shared mapping may share a byte of the file with some
/// piece of `other` (any mapping: a private one shows the file's bytes until it writes them).
pub fn files_conflict(writer: &[FilePiece], other: &[FilePiece]) -> bool {
    writer
        .iter()
        .filter(|w| w.shared)
        .any(|w| other.iter().any(|o| w.may_share(o)))
}

/// The pieces of `region` that lie in mappings of files (shared memory and `memfd`s
/// included), in address order; empty for memory that is no file's (the heap, anonymous
/// private mappings) and off Linux, where mappings are not looked up.
pub fn file_pieces(region: &Region) -> Vec<FilePiece> {
    #[cfg(target_os = "linux")]
    {
        maps::mappings(region.lo, region.hi)
            .into_iter()
            .filter(|m| m.inode != 0)
            .filter_map(|m| {
                let lo = region.lo.max(m.start);
                let hi = region.hi.min(m.end);
                (lo < hi).then(|| {
                    let by = m.offset - m.start;
                    let mut piece = region.shifted(by);
                    piece.lo = lo + by;
                    piece.hi = hi + by;
                    FilePiece {
                        dev: m.dev,
                        inode: m.inode,
                        shared: m.shared,
                        region: piece,
                    }
                })
            })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = region;
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod maps {
    //! The kernel's memory map of this process: which file (device, inode) and offset each
    //! address range shows. Asked with the `PROCMAP_QUERY` ioctl on `/proc/self/maps` (Linux
    //! 6.11 and later: one system call per mapping, about a microsecond); on older kernels by
    //! reading that file (tens of microseconds or more), which only happens when a page of the
    //! range is a file's page (`/proc/self/pagemap`, one small read) or that cannot be told.

    use std::ffi::{c_int, c_ulong};
    use std::fs::File;
    use std::io::Read;
    #[cfg(test)]
    use std::os::fd::AsRawFd;
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::pool;

    /// One mapping: addresses `start..end` show the file `(dev, inode)` from byte `offset`
    /// (inode 0: no file).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Mapping {
        pub start: i128,
        pub end: i128,
        pub offset: i128,
        pub dev: u64,
        pub inode: u64,
        pub shared: bool,
    }

    extern "C" {
        fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    }

    /// `struct procmap_query` of `<linux/fs.h>`.
    #[repr(C)]
    #[derive(Default)]
    struct ProcmapQuery {
        size: u64,
        query_flags: u64,
        query_addr: u64,
        vma_start: u64,
        vma_end: u64,
        vma_flags: u64,
        vma_page_size: u64,
        vma_offset: u64,
        inode: u64,
        dev_major: u32,
        dev_minor: u32,
        vma_name_size: u32,
        build_id_size: u32,
        vma_name_addr: u64,
        build_id_addr: u64,
    }

    /// `_IOWR('f', 17, struct procmap_query)`.
    const PROCMAP_QUERY: c_ulong = (3 << 30)
        | ((std::mem::size_of::<ProcmapQuery>() as c_ulong) << 16)
        | ((b'f' as c_ulong) << 8)
        | 17;
    /// The first mapping at or after the address, rather than only one covering it.
    const COVERING_OR_NEXT_VMA: u64 = 0x10;
    /// `vma_flags` bit of a shared mapping.
    const VMA_SHARED: u64 = 0x08;

    /// Set once `PROCMAP_QUERY` failed as an unknown request (a kernel before 6.11).
    static NO_QUERY: AtomicBool = AtomicBool::new(false);

    /// A file of `/proc/self` kept open, per process: the descriptor plus one in the low 32
    /// bits, the fork generation it was opened in above (a descriptor inherited from a parent
    /// describes the parent's memory).
    struct ProcFile {
        path: &'static str,
        slot: AtomicU64,
    }

    static MAPS: ProcFile = ProcFile {
        path: "/proc/self/maps",
        slot: AtomicU64::new(0),
    };
    static PAGEMAP: ProcFile = ProcFile {
        path: "/proc/self/pagemap",
        slot: AtomicU64::new(0),
    };

    impl ProcFile {
        /// The descriptor, opened on first use in this process; `None` if it cannot be.
        fn fd(&self) -> Option<c_int> {
            let generation = pool::thread_token() >> 32;
            let fd_of = |entry: u64| (entry & 0xffff_ffff) as c_int - 1;
            let cached = self.slot.load(Ordering::Acquire);
            if cached != 0 && cached >> 32 == generation {
                return Some(fd_of(cached));
            }
            let fd = File::open(self.path).ok()?.into_raw_fd();
            let entry = (generation << 32) | (fd as u64 + 1);
            match self
                .slot
                .compare_exchange(cached, entry, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if cached != 0 {
                        // The parent's descriptor, inherited: ours to close.
                        // SAFETY: opened by this module, no longer published.
                        drop(unsafe { File::from_raw_fd(fd_of(cached)) });
                    }
                    Some(fd)
                }
                Err(now) => {
                    // Another thread opened it meanwhile: use theirs, close ours.
                    // SAFETY: `fd` was opened just above and given to no one.
                    drop(unsafe { File::from_raw_fd(fd) });
                    (now >> 32 == generation).then(|| fd_of(now))
                }
            }
        }
    }

    /// The mappings that meet `lo..hi`, in address order (addresses not mapped are skipped).
    pub fn mappings(lo: i128, hi: i128) -> Vec<Mapping> {
        if lo >= hi || lo < 0 || hi > i128::from(u64::MAX) {
            return Vec::new();
        }
        if !NO_QUERY.load(Ordering::Relaxed) {
            if let Some(found) = query(lo, hi) {
                return found;
            }
        }
        if !maybe_file_pages(lo, hi) {
            return Vec::new();
        }
        read_maps(lo, hi)
    }

    /// The mappings that meet `lo..hi` by `PROCMAP_QUERY`; `None` if the kernel lacks it (or
    /// `/proc` cannot be opened).
    pub(super) fn query(lo: i128, hi: i128) -> Option<Vec<Mapping>> {
        let fd = MAPS.fd()?;
        let mut found = Vec::new();
        let mut at = lo;
        while at < hi {
            let mut q = ProcmapQuery {
                size: std::mem::size_of::<ProcmapQuery>() as u64,
                query_flags: COVERING_OR_NEXT_VMA,
                query_addr: at as u64,
                ..ProcmapQuery::default()
            };
            // SAFETY: `q` is a properly sized `struct procmap_query` that lives across the
            // call; no name or build-id buffer is asked for (sizes 0).
            let rc = unsafe { ioctl(fd, PROCMAP_QUERY, &mut q as *mut ProcmapQuery) };
            if rc != 0 {
                let err = std::io::Error::last_os_error().raw_os_error();
                // ENOENT: no mapping at or after `at`.
                if err == Some(2) {
                    break;
                }
                // ENOTTY / EINVAL (no such request) and anything else: ask the file instead.
                NO_QUERY.store(err == Some(25) || err == Some(22), Ordering::Relaxed);
                return None;
            }
            let (start, end) = (i128::from(q.vma_start), i128::from(q.vma_end));
            if start >= hi || end <= at {
                break;
            }
            found.push(Mapping {
                start,
                end,
                offset: i128::from(q.vma_offset),
                dev: (u64::from(q.dev_major) << 32) | u64::from(q.dev_minor),
                inode: q.inode,
                shared: q.vma_flags & VMA_SHARED != 0,
            });
            at = end;
        }
        Some(found)
    }

    /// False only if the first and the last page of `lo..hi` are certainly not a file's
    /// (`/proc/self/pagemap` says so once they are present): then, short of a range pieced
    /// together from separate mappings by hand, no byte of it is. Reads one byte of each of the
    /// two pages first, so that they are present.
    pub(super) fn maybe_file_pages(lo: i128, hi: i128) -> bool {
        const PAGE: u64 = 4096;
        const PRESENT: u64 = 1 << 63;
        const FILE_OR_SHARED: u64 = 1 << 61;
        let Some(fd) = PAGEMAP.fd() else {
            return true;
        };
        // SAFETY: the descriptor stays open for the process; `ManuallyDrop` keeps it so.
        let pagemap = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        let (first, last) = (lo as u64, (hi - 1) as u64);
        for addr in [first, last] {
            // SAFETY: `addr` is a byte of an element of a live array (its first or last),
            // readable: the read only makes the page present.
            unsafe { std::ptr::read_volatile(addr as *const u8) };
            let mut entry = [0u8; 8];
            if pagemap.read_exact_at(&mut entry, addr / PAGE * 8).is_err() {
                return true;
            }
            let bits = u64::from_ne_bytes(entry);
            if bits & PRESENT == 0 || bits & FILE_OR_SHARED != 0 {
                return true;
            }
        }
        false
    }

    /// The mappings that meet `lo..hi`, read from the text of `/proc/self/maps`.
    pub(super) fn read_maps(lo: i128, hi: i128) -> Vec<Mapping> {
        let mut text = String::new();
        let read = File::open("/proc/self/maps").and_then(|mut f| f.read_to_string(&mut text));
        if read.is_err() {
            return Vec::new();
        }
        text.lines()
            .filter_map(parse_line)
            .filter(|m| m.start < hi && lo < m.end)
            .collect()
    }

    /// One line of `/proc/self/maps`: `start-end perms offset major:minor inode [path]`.
    pub(super) fn parse_line(line: &str) -> Option<Mapping> {
        let mut fields = line.split_ascii_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?;
        let offset = fields.next()?;
        let (major, minor) = fields.next()?.split_once(':')?;
        let inode = fields.next()?;
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        Some(Mapping {
            start: i128::from(hex(start)?),
            end: i128::from(hex(end)?),
            offset: i128::from(hex(offset)?),
            dev: (hex(major)? << 32) | hex(minor)?,
            inode: inode.parse().ok()?,
            shared: perms.as_bytes().get(3) == Some(&b's'),
        })
    }

    #[cfg(test)]
    pub(super) fn fd_of(file: &File) -> c_int {
        file.as_raw_fd()
    }
}

/// Whether a claim reads or writes its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One running call's claim on an array's memory.
#[derive(Debug)]
struct Claim {
    id: u64,
    /// The thread that holds it ([`pool::thread_token`]): claims of one thread never
    /// conflict, since one thread runs one kernel at a time (and a call checks its own `out`
    /// against its own inputs exactly).
    thread: u64,
    access: Access,
    region: Region,
    /// The region's pieces in file mappings, once looked up (`None`: not yet).
    files: Option<Vec<FilePiece>>,
}

impl Claim {
    fn files(&mut self) -> &[FilePiece] {
        let region = self.region;
        self.files.get_or_insert_with(|| file_pieces(&region))
    }

    /// True if this claim has been looked up and lies partly in a shared file mapping.
    fn writes_shared_file(&self) -> bool {
        self.access == Access::Write
            && self
                .files
                .as_ref()
                .is_some_and(|f| f.iter().any(|p| p.shared))
    }
}

/// The claims of all running calls.
struct Registry {
    next_id: u64,
    claims: Vec<Claim>,
}

static CLAIMS: ForkLock<Registry> = ForkLock::new(Registry {
    next_id: 1,
    claims: Vec::new(),
});

/// Why a claim was refused: another thread's running call reads or writes a byte of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// What the other call does with that memory.
    pub other: Access,
}

/// A granted claim; dropping it releases the memory.
#[derive(Debug)]
pub struct Held {
    id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut reg = CLAIMS.lock();
        if let Some(i) = reg.claims.iter().position(|c| c.id == self.id) {
            reg.claims.swap_remove(i);
        }
    }
}

/// Claims `region` for `access` on behalf of the calling thread, or says which running call
/// of another thread it would race with: a write conflicts with any claim on a byte of it, a
/// read with a write. `files` are the region's file pieces when the caller has looked them
/// up already (`Some(vec![])` for memory known to be no file's, such as a fresh array).
///
/// Mappings are looked up only where a shared file mapping is written: a writer's own pieces
/// first, then, if it writes a shared mapping, those of every other claim; a reader's only
/// while some other claim writes a shared mapping.
pub fn claim(
    region: Option<Region>,
    access: Access,
    files: Option<Vec<FilePiece>>,
) -> Result<Option<Held>, Conflict> {
    let Some(region) = region else {
        // An empty array: no bytes to share.
        return Ok(None);
    };
    let thread = pool::thread_token();
    let mut mine = Claim {
        id: 0,
        thread,
        access,
        region,
        files,
    };
    let mut reg = CLAIMS.lock();
    for other in reg.claims.iter_mut().filter(|c| c.thread != thread) {
        if access == Access::Read && other.access == Access::Read {
            continue;
        }
        if mine.region.may_share(&other.region) {
            return Err(Conflict {
                other: other.access,
            });
        }
        // Through a file mapped twice: only where one of the two writes a shared mapping. A
        // writer's pieces are looked up (once) to know; a reader's only when needed.
        let other_writes_shared = other.access == Access::Write && {
            other.files();
            other.writes_shared_file()
        };
        let mine_writes_shared = access == Access::Write && mine.files().iter().any(|p| p.shared);
        let conflict = (mine_writes_shared && files_conflict(mine.files(), other.files()))
            || (other_writes_shared && files_conflict(other.files(), mine.files()));
        if conflict {
            return Err(Conflict {
                other: other.access,
            });
        }
    }
    mine.id = reg.next_id;
    reg.next_id += 1;
    let id = mine.id;
    reg.claims.push(mine);
    Ok(Some(Held { id }))
}

/// The `pthread_atfork` prepare handler's part: hold the claims' lock across the fork.
#[cfg(unix)]
pub(crate) fn before_fork() {
    std::mem::forget(CLAIMS.lock());
}

/// The parent and child handlers' part: release the lock; in the child, forget every claim
/// (their threads are not in this process, and will never release them). The claims are
/// leaked rather than freed: a fork handler calls no allocator.
#[cfg(unix)]
pub(crate) fn after_fork(in_child: bool) {
    // SAFETY: `before_fork` took the lock on this thread and leaked its guard.
    unsafe {
        CLAIMS.release_held(|reg| {
            if in_child {
                std::mem::forget(std::mem::take(&mut reg.claims));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(ptr: usize, shape: &[usize], strides: &[isize], itemsize: usize) -> Region {
        Region::of(ptr, shape, strides, itemsize).unwrap()
    }

    #[test]
    fn spans() {
        assert_eq!(Region::of(1000, &[0, 4], &[32, 8], 8), None);
        let one = region(1000, &[], &[], 8);
        assert_eq!((one.lo, one.hi, one.step), (1000, 1008, 0));
        // (3, 4) C order, f64: 12 elements from 1000.
        let c = region(1000, &[3, 4], &[32, 8], 8);
        assert_eq!((c.lo, c.hi, c.step), (1000, 1096, 8));
        // The same, reversed: its pointer is the last element.
        let r = region(1088, &[3, 4], &[-32, -8], 8);
        assert_eq!((r.lo, r.hi), (1000, 1096));
        // Strides no real array has do not overflow.
        let huge = region(1000, &[2], &[isize::MIN + 1], 8);
        assert!(huge.lo < 0);
    }

    #[test]
    fn sharing() {
        let a = region(1000, &[10], &[8], 8);
        // Shifted by one element, by one byte, disjoint.
        assert!(a.may_share(&region(1008, &[10], &[8], 8)));
        assert!(a.may_share(&region(1001, &[10], &[8], 8)));
        assert!(!a.may_share(&region(1080, &[10], &[8], 8)));
        // Interleaved halves of one buffer share nothing; the same stride at another residue
        // of an element that straddles does.
        let even = region(1000, &[10], &[16], 8);
        let odd = region(1008, &[10], &[16], 8);
        assert!(!even.may_share(&odd));
        assert!(even.may_share(&region(1004, &[10], &[16], 8)));
        assert!(even.may_share(&region(1016, &[10], &[16], 8)));
        // Every third against every second element, disjoint by parity: a stride of 48 and
        // one of 32 from an odd element.
        assert!(!region(1000, &[5], &[48], 8).may_share(&region(1008, &[5], &[32], 8)));
        // A single element inside a strided array's gap, and on an element.
        assert!(!even.may_share(&region(1024, &[], &[], 8)));
        assert!(even.may_share(&region(1032, &[], &[], 8)));
        // A byte view (itemsize 1, step 1) of the same memory.
        assert!(even.may_share(&region(1000, &[160], &[1], 1)));
        // Interleaved float32 in float64 slots.
        let lo32 = region(1000, &[10], &[8], 4);
        assert!(!lo32.may_share(&region(1004, &[10], &[8], 4)));
        assert!(lo32.may_share(&region(1002, &[10], &[8], 4)));
    }

    /// The residue test agrees with brute force over every pair of small 1-d layouts.
    #[test]
    fn sharing_matches_brute_force() {
        let bytes = |r: &Region, n: usize, stride: isize| -> Vec<i128> {
            (0..n)
                .flat_map(|i| {
                    let start = r.ptr + i as i128 * stride as i128;
                    (0..r.itemsize as i128).map(move |b| start + b)
                })
                .collect()
        };
        for (n1, s1, w1) in [(4usize, 8isize, 8usize), (3, 16, 8), (5, -24, 8), (6, 4, 4)] {
            for (n2, s2, w2) in [(4usize, 8isize, 8usize), (3, 16, 4), (4, 12, 4), (2, -8, 8)] {
                for shift in 0..64 {
                    let a = region(1000, &[n1], &[s1], w1);
                    let b = region(1000 + shift, &[n2], &[s2], w2);
                    let (ba, bb) = (bytes(&a, n1, s1), bytes(&b, n2, s2));
                    let shared = ba.iter().any(|x| bb.contains(x));
                    if shared {
                        assert!(a.may_share(&b), "{a:?} {b:?}");
                        assert!(b.may_share(&a), "{a:?} {b:?}");
                    }
                    if s1 == s2 && w1 == w2 && s1 > 0 {
                        // Same layout: exact.
                        assert_eq!(a.may_share(&b), shared, "{a:?} {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn file_pieces_compare_files_and_offsets() {
        let at = |inode: u64, shared: bool, off: usize| FilePiece {
            dev: 1,
            inode,
            shared,
            region: region(off, &[10], &[8], 8),
        };
        assert!(at(5, true, 0).may_share(&at(5, false, 8)));
        assert!(!at(5, true, 0).may_share(&at(6, true, 8)));
        assert!(!at(5, true, 0).may_share(&at(5, true, 80)));
        assert!(files_conflict(&[at(5, true, 0)], &[at(5, false, 8)]));
        // Writes through a private mapping reach no other mapping.
        assert!(!files_conflict(&[at(5, false, 0)], &[at(5, true, 8)]));
    }

    #[test]
    fn parses_maps_lines() {
        let m =
            maps::parse_line("7f1c2a000000-7f1c2a014000 rw-s 00002000 fd:01 10011126   /tmp/x.bin")
                .unwrap();
        assert_eq!(
            (m.start, m.end, m.offset),
            (0x7f1c2a000000, 0x7f1c2a014000, 0x2000)
        );
        assert_eq!(
            (m.dev, m.inode, m.shared),
            ((0xfd << 32) | 1, 10011126, true)
        );
        let anon =
            maps::parse_line("55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0 [heap]").unwrap();
        assert_eq!((anon.inode, anon.shared), (0, false));
        assert!(maps::parse_line("garbage").is_none());
    }

    /// Two shared mappings of one file at different addresses: the pieces of both show the
    /// same file offsets, so they conflict; a private mapping's writes do not.
    #[cfg(target_os = "linux")]
    #[test]
    fn two_maps_of_one_file_are_one_memory() {
        use std::io::Write;
        extern "C" {
            fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64)
                -> *mut u8;
            fn munmap(addr: *mut u8, len: usize) -> i32;
        }
        const PROT_RW: i32 = 0x1 | 0x2;
        const MAP_SHARED: i32 = 0x01;
        const MAP_PRIVATE: i32 = 0x02;
        let path = std::env::temp_dir().join(format!("crossent-maps-{}", std::process::id()));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&[0u8; 3 * 4096]).unwrap();
        drop(file);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let fd = maps::fd_of(&file);
        let len = 3 * 4096;
        // SAFETY: fresh mappings of a file of `len` bytes, unmapped below.
        let (a, b, p) = unsafe {
            (
                mmap(std::ptr::null_mut(), len, PROT_RW, MAP_SHARED, fd, 0),
                mmap(
                    std::ptr::null_mut(),
                    2 * 4096,
                    PROT_RW,
                    MAP_SHARED,
                    fd,
                    4096,
                ),
                mmap(std::ptr::null_mut(), len, PROT_RW, MAP_PRIVATE, fd, 0),
            )
        };
        assert!(![a, b, p].iter().any(|m| m.is_null() || *m as isize == -1));
        // 100 f64 from byte 4096 + 8 of the file, through each mapping.
        let through = |base: *mut u8, file_offset_of_base: usize| {
            region(
                base as usize + 4096 + 8 - file_offset_of_base,
                &[100],
                &[8],
                8,
            )
        };
        let (ra, rb, rp) = (through(a, 0), through(b, 4096), through(p, 0));
        let (fa, fb, fp) = (file_pieces(&ra), file_pieces(&rb), file_pieces(&rp));
        assert!(!ra.may_share(&rb));
        assert!(files_conflict(&fa, &fb));
        assert!(files_conflict(&fb, &fa));
        assert!(files_conflict(&fa, &fp));
        assert!(!files_conflict(&fp, &fa));
        // One element further along in one of them: still overlapping; 100 elements on: not.
        let next = region(b as usize + 8 + 8, &[100], &[8], 8);
        assert!(files_conflict(&fa, &file_pieces(&next)));
        let far = region(b as usize + 8 + 800, &[100], &[8], 8);
        assert!(!files_conflict(&fa, &file_pieces(&far)));
        // Heap memory is no file's.
        let heap = vec![0f64; 1000];
        let heap_region = region(heap.as_ptr() as usize, &[1000], &[8], 8);
        assert!(file_pieces(&heap_region).is_empty());
        // The older kernels' way (the text of /proc/self/maps, behind the pagemap filter)
        // sees what PROCMAP_QUERY sees, where the kernel has both.
        for r in [ra, rb, rp] {
            assert!(maps::maybe_file_pages(r.lo, r.hi));
            if let Some(queried) = maps::query(r.lo, r.hi) {
                assert_eq!(maps::read_maps(r.lo, r.hi), queried);
            }
            assert_eq!(maps::read_maps(r.lo, r.hi).len(), 1);
        }
        assert!(!maps::maybe_file_pages(heap_region.lo, heap_region.hi));
        // SAFETY: the mappings made above.
        unsafe {
            munmap(a, len);
            munmap(b, 2 * 4096);
            munmap(p, len);
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn claims_conflict_across_threads_only() {
        let buf = vec![0f64; 64];
        let at = |i: usize, n: usize| Region::of(buf.as_ptr() as usize + 8 * i, &[n], &[8], 8);
        let w = claim(at(0, 10), Access::Write, Some(Vec::new())).unwrap();
        // The same thread: no conflict (a call checks its own operands exactly).
        assert!(claim(at(5, 10), Access::Read, None).is_ok());
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = claim(at(9, 4), Access::Read, None);
                assert_eq!(
                    r.unwrap_err(),
                    Conflict {
                        other: Access::Write
                    }
                );
                // Past the written elements: fine.
                assert!(claim(at(10, 4), Access::Read, None).is_ok());
            });
        });
        drop(w);
        // Interleaved: the even elements written, the odd ones read and written elsewhere.
        let even = Region::of(buf.as_ptr() as usize + 160, &[10], &[16], 8);
        let odd = Region::of(buf.as_ptr() as usize + 168, &[10], &[16], 8);
        let w = claim(even, Access::Write, Some(Vec::new())).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(claim(odd, Access::Write, None).is_ok());
                assert!(claim(even, Access::Read, None).is_err());
            });
        });
        drop(w);
        std::thread::scope(|s| {
            s.spawn(|| assert!(claim(at(9, 4), Access::Write, None).is_ok()));
        });
        // Reads never conflict with reads.
        let r1 = claim(at(0, 10), Access::Read, None).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(claim(at(0, 10), Access::Read, None).is_ok());
                let e = claim(at(3, 1), Access::Write, None).unwrap_err();
                assert_eq!(
                    e,
                    Conflict {
                        other: Access::Read
                    }
                );
            });
        });
        drop(r1);
        assert!(claim(None, Access::Write, None).unwrap().is_none());
    }
}
