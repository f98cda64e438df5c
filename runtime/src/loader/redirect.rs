//! Redirecting running functions to a patch's new copies: the first bytes of each old copy
//! become `jmp *0(%rip)` followed by the new copy's address (14 bytes), so that every caller
//! the patch cannot switch (host code calling the function directly, a vtable or function
//! pointer built before the patch, drop glue) runs the new code from its next call on.
//!
//! Writing code other threads may be running needs care (Linux livepatch, Live++ and jet-live
//! each solve it their way). Here, as a debugger would, every other thread of the process is
//! stopped first, in a signal handler that records where it was interrupted and waits:
//!
//! 1. the pages are made writable (while the threads still run: the bytes do not change yet);
//! 2. each other thread gets a signal and parks in the handler, its interrupted instruction
//!    pointer recorded (threads created meanwhile are found by listing the threads again);
//! 3. if any thread was interrupted *inside* the bytes to be overwritten (past an old entry,
//!    before the end of the jump), nothing is written: everything is released and tried again
//!    a little later, and after some tries the redirect fails (cargo hot then restarts);
//! 4. the jumps are written, and each parked thread executes `cpuid` (a serialising
//!    instruction, as Intel's rules for cross-modifying code ask) before it returns to its
//!    code, which then sees only whole jumps;
//! 5. the pages are made read-only and executable again.
//!
//! The patching thread allocates nothing while the others are parked (one of them could hold
//! the allocator's lock): thread lists are read with `getdents64` into buffers prepared
//! beforehand.

#[derive(Debug, Clone, Copy)]
pub(crate) struct Jump {
    pub from: usize,
    pub to: usize,
    /// Bytes at `from` that belong to the old function.
    pub room: usize,
}

/// `jmp *0(%rip)` and the 8-byte address it reads.
pub(crate) const JUMP_LEN: usize = 14;

fn jump_bytes(to: usize) -> [u8; JUMP_LEN] {
    let mut bytes = [0u8; JUMP_LEN];
    bytes[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
    bytes[6..].copy_from_slice(&(to as u64).to_le_bytes());
    bytes
}

/// Checks that the jumps fit and do not overlap.
fn validate(jumps: &[Jump]) -> Result<(), String> {
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(jumps.len());
    for jump in jumps {
        if jump.from == 0 || jump.to == 0 {
            return Err("a redirect has no address".to_string());
        }
        if jump.room < JUMP_LEN {
            return Err(format!("the function at {:#x} is {} bytes long, too short for a {JUMP_LEN}-byte jump", jump.from, jump.room));
        }
        ranges.push((jump.from, jump.from + JUMP_LEN));
    }
    ranges.sort_unstable();
    if ranges.windows(2).any(|pair| pair[0].1 > pair[1].0) {
        return Err("two redirects overlap".to_string());
    }
    Ok(())
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) use linux::apply;

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub(crate) fn apply(jumps: &[Jump]) -> Result<(), String> {
    validate(jumps)?;
    Err("redirecting running functions is only supported on x86_64 Linux".to_string())
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod linux {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Mutex, Once};
    use std::time::{Duration, Instant};

    use super::{jump_bytes, validate, Jump, JUMP_LEN};

    /// How many threads the handler can record at once.
    const MAX_THREADS: usize = 4096;
    const TRIES: usize = 50;

    static ARRIVED: AtomicUsize = AtomicUsize::new(0);
    static DEPARTED: AtomicUsize = AtomicUsize::new(0);
    static RELEASE: AtomicBool = AtomicBool::new(true);
    static PCS: [AtomicU64; MAX_THREADS] = [const { AtomicU64::new(0) }; MAX_THREADS];
    /// One redirect at a time (the agent has one thread, but a test may call in parallel).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    static INSTALL: Once = Once::new();

    fn signal() -> i32 {
        libc::SIGRTMIN() + 6
    }

    /// Parks the interrupted thread until released, after recording where it was.
    extern "C" fn park(_signal: libc::c_int, _info: *mut libc::siginfo_t, context: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid `ucontext_t` as the third argument of an
        // SA_SIGINFO handler; only the saved instruction pointer is read.
        let pc = unsafe { (*(context as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RIP as usize] } as u64;
        let slot = SLOTS.fetch_add(1, Ordering::AcqRel);
        if slot < MAX_THREADS {
            PCS[slot].store(pc, Ordering::Release);
        }
        ARRIVED.fetch_add(1, Ordering::AcqRel);
        while !RELEASE.load(Ordering::Acquire) {
            // SAFETY: sched_yield is async-signal-safe and has no arguments; it lets the
            // patching thread run on a machine with few cores.
            unsafe { libc::sched_yield() };
        }
        // SAFETY: cpuid has no side effects beyond its outputs; it serialises this core's
        // instruction stream, so the code written while this thread was parked is fetched
        // anew.
        std::arch::x86_64::__cpuid(0);
        DEPARTED.fetch_add(1, Ordering::AcqRel);
    }

    /// Slots of `PCS` taken in this round.
    static SLOTS: AtomicUsize = AtomicUsize::new(0);

    fn install_handler() -> Result<(), String> {
        let mut result = Ok(());
        INSTALL.call_once(|| {
            // SAFETY: a zeroed sigaction is a valid value to fill in; the handler is an
            // `extern "C"` function of the SA_SIGINFO shape. It stays installed for the life of
            // the process, so a signal that arrives late (a thread that had it blocked) never
            // meets the default action, which would end the process; when no redirect is
            // under way `RELEASE` is set and the handler returns at once.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = park as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal(), &action, std::ptr::null_mut()) != 0 {
                    result = Err(format!("cannot install the signal handler: {}", std::io::Error::last_os_error()));
                }
            }
        });
        result
    }

    /// The threads of this process, into `out` (its capacity is never exceeded: nothing is
    /// allocated, here or in the error, since other threads may be parked).
    fn list_threads(out: &mut Vec<i32>) -> Result<(), &'static str> {
        out.clear();
        // SAFETY: the path is a NUL-terminated literal; the descriptor is closed below.
        let fd = unsafe { libc::open(c"/proc/self/task".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err("cannot list the threads of the program in /proc/self/task");
        }
        let mut buffer = [0u8; 4096];
        loop {
            // SAFETY: getdents64 writes at most `buffer.len()` bytes of `linux_dirent64`
            // records into the buffer, which outlives the call.
            let read = unsafe { libc::syscall(libc::SYS_getdents64, fd, buffer.as_mut_ptr(), buffer.len()) };
            if read <= 0 {
                break;
            }
            let mut offset = 0usize;
            while offset < read as usize {
                // linux_dirent64: u64 d_ino, i64 d_off, u16 d_reclen, u8 d_type, name.
                let length = u16::from_ne_bytes([buffer[offset + 16], buffer[offset + 17]]) as usize;
                let name = &buffer[offset + 19..offset + length];
                let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
                let mut tid: i32 = 0;
                let numeric = !name.is_empty() && name.iter().all(u8::is_ascii_digit);
                if numeric {
                    for digit in name {
                        tid = tid * 10 + i32::from(digit - b'0');
                    }
                    if out.len() < out.capacity() {
                        out.push(tid);
                    }
                }
                offset += length.max(1);
            }
        }
        // SAFETY: `fd` was opened above and is not used after this.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize
    }

    fn protect(pages: &[usize], writable: bool) -> Result<(), String> {
        let protection = if writable { libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC } else { libc::PROT_READ | libc::PROT_EXEC };
        for page in pages {
            // SAFETY: each page holds code of the running program or of a loaded patch (the
            // addresses come from their symbol tables, checked by cargo hot); changing its
            // protection keeps it mapped, and it is made read-only and executable again
            // once the jumps are written.
            if unsafe { libc::mprotect(*page as *mut libc::c_void, page_size(), protection) } != 0 {
                return Err(format!("cannot make the code at {page:#x} writable: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Writes every jump while the other threads are parked. All or nothing.
    pub(crate) fn apply(jumps: &[Jump]) -> Result<(), String> {
        validate(jumps)?;
        if jumps.is_empty() {
            return Ok(());
        }
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        install_handler()?;
        let size = page_size();
        let mut pages: Vec<usize> = jumps.iter().flat_map(|j| [j.from & !(size - 1), (j.from + JUMP_LEN - 1) & !(size - 1)]).collect();
        pages.sort_unstable();
        pages.dedup();
        let writes: Vec<(usize, [u8; JUMP_LEN])> = jumps.iter().map(|j| (j.from, jump_bytes(j.to))).collect();
        protect(&pages, true)?;
        let mut result = Err("no try was made".to_string());
        for _ in 0..TRIES {
            result = stopped(|pcs| {
                let busy = pcs.iter().any(|pc| jumps.iter().any(|j| *pc as usize > j.from && (*pc as usize) < j.from + JUMP_LEN));
                if busy {
                    return false;
                }
                for (from, bytes) in &writes {
                    // SAFETY: `from..from + JUMP_LEN` lies within one old function (its room
                    // was checked), on pages made writable above; no other thread is running,
                    // and none was interrupted inside these bytes.
                    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), *from as *mut u8, JUMP_LEN) };
                }
                true
            });
            match result {
                Ok(true) => break,
                Ok(false) => {
                    result = Err("another thread kept running the first bytes of a function to redirect".to_string());
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => break,
            }
        }
        let restored = protect(&pages, false);
        result.map(|_| ())?;
        restored
    }

    /// Parks every other thread, runs `write` with their interrupted instruction pointers,
    /// and releases them. Ok(what `write` returned). Nothing is allocated while threads are
    /// parked (one of them may hold the allocator's lock): the buffers are made first, and the
    /// error is a static text until they are released.
    fn stopped(write: impl FnOnce(&[u64]) -> bool) -> Result<bool, String> {
        let mut threads: Vec<i32> = Vec::with_capacity(MAX_THREADS);
        let mut signalled: Vec<i32> = Vec::with_capacity(MAX_THREADS);
        let mut pcs: Vec<u64> = Vec::with_capacity(MAX_THREADS);
        // SAFETY: gettid and getpid have no preconditions.
        let (me, pid) = unsafe { (libc::gettid(), libc::getpid()) };
        SLOTS.store(0, Ordering::Release);
        ARRIVED.store(0, Ordering::Release);
        DEPARTED.store(0, Ordering::Release);
        RELEASE.store(false, Ordering::Release);
        let outcome = (|| {
            for _ in 0..16 {
                list_threads(&mut threads)?;
                let mut new = 0;
                for tid in threads.iter().copied() {
                    if tid == me || signalled.contains(&tid) || signalled.len() == signalled.capacity() {
                        continue;
                    }
                    // SAFETY: tgkill sends our signal to a thread of this process; a thread
                    // that already exited makes it fail with ESRCH, and is not waited for.
                    if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal()) } == 0 {
                        signalled.push(tid);
                        new += 1;
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(2);
                while ARRIVED.load(Ordering::Acquire) < signalled.len() {
                    if Instant::now() > deadline {
                        return Err("a thread of the program did not stop to let its code be redirected");
                    }
                    std::hint::spin_loop();
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
                if new == 0 {
                    break;
                }
            }
            let recorded = SLOTS.load(Ordering::Acquire);
            if recorded > MAX_THREADS {
                return Err("the program has more threads than a redirect can stop");
            }
            pcs.extend(PCS[..recorded].iter().map(|pc| pc.load(Ordering::Acquire)));
            Ok(write(&pcs))
        })();
        RELEASE.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(2);
        while DEPARTED.load(Ordering::Acquire) < ARRIVED.load(Ordering::Acquire) && Instant::now() < deadline {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        outcome.map_err(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_reads_its_target_right_after_itself() {
        let bytes = jump_bytes(0x1122_3344_5566_7788);
        assert_eq!(&bytes[..6], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(bytes[6..].try_into().unwrap()), 0x1122_3344_5566_7788);
    }

    #[test]
    fn jumps_must_fit_and_not_overlap() {
        assert!(validate(&[Jump { from: 0x1000, to: 0x2000, room: 13 }]).unwrap_err().contains("too short"));
        assert!(validate(&[Jump { from: 0x1000, to: 0x2000, room: 64 }, Jump { from: 0x1008, to: 0x3000, room: 64 }]).is_err());
        assert!(validate(&[Jump { from: 0x1000, to: 0x2000, room: 14 }, Jump { from: 0x1010, to: 0x3000, room: 14 }]).is_ok());
    }

    #[inline(never)]
    extern "C" fn old_answer() -> u64 {
        std::hint::black_box(1) + std::hint::black_box(0)
    }

    #[inline(never)]
    extern "C" fn new_answer() -> u64 {
        std::hint::black_box(2) + std::hint::black_box(0)
    }

    /// A real redirect in this process while other threads keep calling the old function.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn a_redirected_function_runs_the_new_code_for_every_caller_while_threads_run() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let old: extern "C" fn() -> u64 = std::hint::black_box(old_answer);
        assert_eq!(old(), 1);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut seen_new = false;
                    while !stop.load(Ordering::Relaxed) {
                        let value = old();
                        assert!(value == 1 || value == 2, "garbage {value}");
                        seen_new |= value == 2;
                    }
                    seen_new
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        apply(&[Jump { from: old_answer as *const () as usize, to: new_answer as *const () as usize, room: 64 }]).expect("redirected");
        assert_eq!(old(), 2, "the old function now runs the new code");
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            assert!(worker.join().unwrap(), "each thread saw the new code");
        }
    }
}
