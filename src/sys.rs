//! Every unsafe operation of cargo-hot, each with the invariant it relies on: mapping
//! artifacts read-only, signalling processes, and the parent-death signal of the program.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// Runs `command` at a lower scheduling priority (nice 10): background work that must not
/// slow the program or the developer's next build.
pub fn at_low_priority(command: &mut Command) {
    // SAFETY: between fork and exec only `nice`, which is async-signal-safe; its result does
    // not matter (the command at normal priority is still correct).
    unsafe {
        command.pre_exec(|| {
            libc::nice(10);
            Ok(())
        });
    }
}

/// Runs `command` only when the machine is otherwise idle (`SCHED_IDLE`): work that may wait
/// for everything else, including the other warm-up.
pub fn at_idle_priority(command: &mut Command) {
    // SAFETY: between fork and exec only `sched_setscheduler` and `nice`, both
    // async-signal-safe system calls; their results do not matter (the command at a higher
    // priority is still correct).
    unsafe {
        command.pre_exec(|| {
            let param = libc::sched_param { sched_priority: 0 };
            if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                libc::nice(19);
            }
            Ok(())
        });
    }
}

/// Lowers the calling thread's priority (nice 10): background reading that must not slow the
/// program starting beside it on a small machine.
pub fn lower_this_thread_priority() {
    // SAFETY: `gettid` and `setpriority` are plain system calls on the calling thread; a
    // failure leaves the priority as it was, which is still correct.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// Maps a build artifact (rlib, executable, patch, system library) read-only.
pub fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: the mapping is read-only and the files mapped here are not modified in place
    // while cargo hot reads them: rustc and the linkers replace outputs with new files, and
    // a patch's rlib (in cargo hot's own directory, never cargo's) is only rewritten by the
    // next patch compile or warm-up, which starts after the current patch has been linked and
    // checked (the session is sequential, and a patch waits for the warm-up to end).
    unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))
}

/// Sends `signal` to the process group led by `pid`.
pub fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a negative pid addresses the process
    // group that the program leads (it was spawned with process_group(0)).
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
    }
}

/// Whether a process with this pid exists.
pub fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check.
    pid > 0 && unsafe { libc::kill(pid, 0) == 0 }
}

/// A close-on-exec duplicate of `fd` numbered at least `min`.
pub fn dup_cloexec_at_least(fd: &OwnedFd, min: RawFd) -> Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor we own returns a new descriptor (or -1),
    // which we then own exclusively.
    let duplicate = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if duplicate < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(duplicate) })
}

/// Moves descriptor `from` to number `to` (inheritable across exec) and closes `from`.
/// Used by the trampoline, a single-threaded process about to exec.
pub fn move_fd(from: RawFd, to: RawFd) -> std::io::Result<()> {
    if from == to {
        // SAFETY: clears close-on-exec on a descriptor this process inherited.
        return if unsafe { libc::fcntl(from, libc::F_SETFD, 0) } < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
    }
    // SAFETY: dup2 onto `to` (which the caller reserves for this socket; cargo hot's copies
    // are numbered 100 and up, so `to` never holds another of them) clears close-on-exec on
    // the new descriptor; then the inherited original is closed, which nothing else uses.
    unsafe {
        if libc::dup2(from, to) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::close(from);
    }
    Ok(())
}

/// Lets `fds` (close-on-exec in cargo hot) be inherited by the spawned trampoline.
pub fn inherit_fds(command: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: runs between fork and exec; fcntl is async-signal-safe, allocates nothing, and
    // the descriptors are cargo hot's listening sockets, open for the whole session.
    unsafe {
        command.pre_exec(move || {
            for fd in &fds {
                if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The process on the other end of a Unix stream socket (SO_PEERCRED: the process that
/// connected, as the kernel recorded it at `connect`).
pub fn peer_pid(stream: &std::os::unix::net::UnixStream) -> Option<u32> {
    let mut credentials = std::mem::MaybeUninit::<libc::ucred>::zeroed();
    let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `credentials`, which has room for
    // a `ucred`; we read it only when the call succeeded and filled all of it.
    let got = unsafe {
        libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, credentials.as_mut_ptr().cast(), &mut length)
    };
    if got != 0 || length as usize != std::mem::size_of::<libc::ucred>() {
        return None;
    }
    // SAFETY: filled by the successful call above (zeroed before, so never uninitialised).
    let credentials = unsafe { credentials.assume_init() };
    u32::try_from(credentials.pid).ok().filter(|pid| *pid > 0)
}

/// Sends one byte on a Unix stream socket, with a copy of `fd` attached (SCM_RIGHTS) when
/// given: the receiver gets its own descriptor of the same open socket.
pub fn send_byte_with_fd(stream: &std::os::unix::net::UnixStream, byte: u8, fd: Option<RawFd>) -> std::io::Result<()> {
    let mut payload = [byte];
    let mut part = libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: 1 };
    // Room for one descriptor's control message, aligned for `cmsghdr` (u64 words).
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    assert!(space <= std::mem::size_of_val(&control), "one descriptor's control message fits");
    // SAFETY: msghdr is plain data; zeroed is a valid empty header, filled in below.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut part;
    message.msg_iovlen = 1;
    if let Some(fd) = fd {
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = space as _;
        // SAFETY: `message` points at `control`, which has room for CMSG_SPACE(one fd) bytes
        // and is aligned for cmsghdr; CMSG_FIRSTHDR is then non-null and CMSG_DATA points
        // inside `control`, where an fd is written unaligned.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: every pointer in `message` (the iovec, its byte, the control buffer) lives
    // until sendmsg returns; sendmsg only reads them.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &message, libc::MSG_NOSIGNAL) };
    if sent == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes the spawned program die with cargo hot, even when cargo hot is killed by SIGKILL.
pub fn kill_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // cargo hot died between fork and prctl: do not run as an orphan.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// A pseudo-terminal pair: the program gets the slave as its standard output and error (so
/// it sees a terminal and keeps its colours), cargo hot reads the master. The window size is
/// cargo hot's own terminal's.
pub fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave): (RawFd, RawFd) = (-1, -1);
    let mut size = std::mem::MaybeUninit::<libc::winsize>::zeroed();
    // SAFETY: TIOCGWINSZ writes a `winsize` into `size` when standard output is a terminal
    // and fails otherwise (the zeroed size then stays); nothing else is touched.
    let has_size = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, size.as_mut_ptr()) } == 0;
    let size = if has_size { Some(unsafe { size.assume_init() }) } else { None };
    // SAFETY: openpty writes two new descriptors into `master` and `slave` on success; the
    // name, termios and window-size pointers may be null (the size is set separately).
    let opened = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    if opened != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot open a pseudo-terminal for the program");
    }
    // SAFETY: both descriptors were just created by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    if let Some(size) = size {
        // SAFETY: TIOCSWINSZ reads a valid `winsize` for a terminal descriptor we own.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
    // SAFETY: marks our end close-on-exec, so no program started later inherits it.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((master, slave))
}

/// Standard input switched to reading single keys (no line buffering, no echo); the previous
/// mode comes back when this is dropped. Ctrl-C still signals.
pub struct KeyMode {
    original: libc::termios,
}

impl KeyMode {
    /// None when standard input is not a terminal.
    pub fn enter() -> Option<KeyMode> {
        let mut original = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills `original` for a terminal descriptor, and fails otherwise
        // (then it is not read).
        if unsafe { libc::tcgetattr(0, original.as_mut_ptr()) } != 0 {
            return None;
        }
        let original = unsafe { original.assume_init() };
        let mut keys = original;
        keys.c_lflag &= !(libc::ICANON | libc::ECHO);
        keys.c_cc[libc::VMIN] = 1;
        keys.c_cc[libc::VTIME] = 0;
        // SAFETY: sets a mode derived from the terminal's own on standard input.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &keys) } != 0 {
            return None;
        }
        Some(KeyMode { original })
    }
}

impl Drop for KeyMode {
    fn drop(&mut self) {
        // SAFETY: restores the mode read from this same terminal in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.original) };
    }
}
