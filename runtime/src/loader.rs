//! Everything unsafe in the runtime lives here: the slots that exported functions call
//! through, loading a patch with `dlopen`, redirecting running functions to a patch's new
//! copies ([`redirect`]), and the constructor that starts the agent.

mod redirect;

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Where an exported function finds its current code: empty (null) means "the code this
/// binary was built with"; otherwise the address of the newest patch's entry function.
///
/// `repr(transparent)` over an `AtomicPtr<()>`: the loader finds a slot by its exported
/// symbol and stores into it through a plain `AtomicPtr<()>` pointer.
#[repr(transparent)]
pub struct Slot<F> {
    code: AtomicPtr<()>,
    _signature: PhantomData<F>,
}

impl<F: Copy> Slot<F> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        const {
            assert!(
                std::mem::size_of::<F>() == std::mem::size_of::<*mut ()>(),
                "a hot slot holds a function pointer"
            )
        };
        Slot { code: AtomicPtr::new(std::ptr::null_mut()), _signature: PhantomData }
    }

    /// The patched code, if any. One atomic load.
    #[inline(always)]
    pub fn get(&self) -> Option<F> {
        let code = self.code.load(Ordering::Acquire);
        if code.is_null() {
            None
        } else {
            // SAFETY: `F` is a function pointer type (same size as a pointer, checked in
            // `new`), and the only writer, `load_patch`, stores the address of the entry
            // function exported under the same key as this slot. The key carries a hash of
            // the signature, and cargo hot's ABI gate checked that the patch's entry has the
            // same key and the same argument layouts before sending the patch, so the code
            // behind `code` has exactly the type `F`.
            Some(unsafe { std::mem::transmute_copy::<*mut (), F>(&code) })
        }
    }
}

/// A patch the loader switched to.
pub(crate) struct Loaded {
    pub switched: usize,
    pub redirected: usize,
    /// The patch's load bias: its symbol values plus this are its addresses.
    pub base: u64,
}

/// Loads the shared object at `path`, makes each of `redirects` jump to the patch's new copy,
/// and points the slot of each export at the patch's entry. Every symbol is resolved and every
/// redirect checked before anything is switched: on error nothing changes (the patch stays
/// loaded, unused).
pub(crate) fn load_patch(path: &str, exports: &[String], redirects: &[crate::protocol::Redirect]) -> Result<Loaded, String> {
    let c_path = CString::new(path).map_err(|_| format!("patch path contains a NUL byte: {path:?}"))?;
    // SAFETY: `c_path` is a valid C string. RTLD_NOW resolves every symbol now, so a missing
    // symbol is an error here and never a crash at call time; RTLD_LOCAL keeps the patch's
    // symbols out of the global scope, so later look-ups of slots find the host's.
    // The handle is deliberately never closed: old code may still be running.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("dlopen failed: {}", last_dl_error()));
    }
    let mut switches = Vec::with_capacity(exports.len());
    for key in exports {
        let entry = lookup(handle, &format!("__hot_entry_{key}"))
            .ok_or_else(|| format!("the patch has no entry `{key}`"))?;
        let slot = lookup(libc::RTLD_DEFAULT, &format!("__hot_slot_{key}"))
            .ok_or_else(|| format!("the running program has no slot for `{key}`"))?;
        switches.push((slot as *const AtomicPtr<()>, entry));
    }
    let base = load_bias(handle);
    if !redirects.is_empty() {
        if base == 0 {
            return Err("cannot tell where the patch was loaded, so no running function can be redirected to it".to_string());
        }
        let jumps: Vec<redirect::Jump> =
            redirects.iter().map(|r| redirect::Jump { from: r.from as usize, to: base.wrapping_add(r.to) as usize, room: r.room as usize }).collect();
        redirect::apply(&jumps)?;
    }
    for (slot, entry) in &switches {
        // SAFETY: `slot` is the address of a `Slot<F>` static of the running program (found
        // by its exported name in the global scope, which excludes RTLD_LOCAL patches), and
        // `Slot` is `repr(transparent)` over `AtomicPtr<()>`, so this is an aligned, live
        // atomic. The Release store pairs with the Acquire load in `Slot::get`, so a caller
        // that sees the new pointer also sees the fully loaded patch.
        unsafe { (**slot).store(*entry, Ordering::Release) };
    }
    Ok(Loaded { switched: switches.len(), redirected: redirects.len(), base })
}

/// The load bias of a handle returned by `dlopen` (`l_addr` of its link map), 0 if unknown.
fn load_bias(handle: *mut libc::c_void) -> u64 {
    /// The first field of glibc's and musl's `struct link_map` (<link.h>).
    #[repr(C)]
    struct LinkMapHead {
        l_addr: usize,
    }
    let mut map: *const LinkMapHead = std::ptr::null();
    // SAFETY: RTLD_DI_LINKMAP writes a `struct link_map *` for a valid handle into the
    // pointer we pass; `l_addr` is that struct's first field on every libc with dlinfo, and
    // the map lives as long as the handle, which is never closed.
    unsafe {
        if libc::dlinfo(handle, libc::RTLD_DI_LINKMAP, (&mut map as *mut *const LinkMapHead).cast()) != 0 || map.is_null() {
            return 0;
        }
        (*map).l_addr as u64
    }
}

/// The anchor whose address tells cargo hot the executable's load bias: cargo hot reads its
/// link-time address from the binary's symbol table and subtracts it from the address
/// reported here.
#[unsafe(no_mangle)]
#[used]
pub static __hot_runtime_anchor: u8 = 0;

pub(crate) fn anchor_address() -> u64 {
    std::ptr::addr_of!(__hot_runtime_anchor) as u64
}

/// The offset from the thread pointer to the executable's thread-local block: the same on
/// every thread (its block is allocated statically, at a fixed distance below the thread
/// pointer on x86_64). With it cargo hot makes a patch's thread-local accesses use the running
/// program's own thread-locals. None when the executable has no thread-locals or the
/// architecture is not supported.
pub(crate) fn executable_tls_offset() -> Option<i64> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let block = executable_tls_block()?;
        let thread_pointer: u64;
        // SAFETY: on x86_64 Linux the first word of the thread control block, at %fs:0, is
        // the thread pointer itself (the TLS ABI's self-pointer); reading it has no effects.
        unsafe { std::arch::asm!("mov {}, fs:0", out(reg) thread_pointer, options(nostack, readonly, preserves_flags)) };
        Some(block as i64 - thread_pointer as i64)
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    None
}

/// The executable's load bias: where the first object `dl_iterate_phdr` reports (the
/// executable) was loaded, relative to its link-time addresses.
pub(crate) fn executable_bias() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
            // SAFETY: dl_iterate_phdr passes a valid `dl_phdr_info` for the call's duration
            // (`dlpi_addr` is its first field, in every layout), and `data` is the `&mut u64`
            // given below. The first object reported is the executable.
            unsafe { *(data as *mut u64) = (*info).dlpi_addr };
            1 // stop after the executable
        }
        let mut bias: u64 = 0;
        // SAFETY: the callback only reads the info it is given and writes `bias`.
        let called = unsafe { libc::dl_iterate_phdr(Some(first), (&mut bias as *mut u64).cast()) };
        (called == 1).then_some(bias)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// This thread's thread-local block of the executable (the first object `dl_iterate_phdr`
/// reports), if the executable has one.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn executable_tls_block() -> Option<u64> {
    unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, size: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
        // The thread-local fields came last (glibc 2.4); an older layout has none.
        let has_tls_fields = size >= std::mem::size_of::<libc::dl_phdr_info>();
        // SAFETY: dl_iterate_phdr passes a valid `dl_phdr_info` of `size` bytes for the
        // call's duration (the fields read are within it, checked above), and `data` is the
        // `&mut u64` given below. The first object reported is the executable.
        unsafe {
            let block = if has_tls_fields && (*info).dlpi_tls_modid != 0 { (*info).dlpi_tls_data as u64 } else { 0 };
            *(data as *mut u64) = block;
        }
        1 // stop after the executable
    }
    let mut block: u64 = 0;
    // SAFETY: the callback only reads the info it is given and writes `block`.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut block as *mut u64).cast()) };
    (block != 0).then_some(block)
}

fn lookup(handle: *mut libc::c_void, name: &str) -> Option<*mut ()> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: `handle` is a handle returned by `dlopen` or RTLD_DEFAULT, and `c_name` a valid
    // C string; dlsym only reads them.
    let address = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
    (!address.is_null()).then_some(address.cast())
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns null or a pointer to a NUL-terminated string owned by libc,
    // valid until the next dl* call on this thread; we copy it at once.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown error".to_string()
    } else {
        unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
    }
}

/// The descriptors passed to this process by the systemd convention: 3..3+LISTEN_FDS when
/// LISTEN_PID is this process, none otherwise.
fn passed_descriptors() -> std::ops::Range<i32> {
    let for_us = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count: i32 = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    3..if for_us { 3 + count.clamp(0, 64) } else { 3 }
}

/// The listening sockets passed to this process by the systemd convention (cargo hot's
/// `listen`, systemd socket activation, systemfd): descriptors 3.. when `LISTEN_PID` is this
/// process. Adopted once, for the whole process.
pub(crate) fn inherited_listeners() -> &'static [std::net::TcpListener] {
    static LISTENERS: std::sync::OnceLock<Vec<std::net::TcpListener>> = std::sync::OnceLock::new();
    LISTENERS.get_or_init(|| {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let mut listeners = Vec::new();
        for fd in passed_descriptors() {
            // SAFETY: by the convention, descriptors 3..3+LISTEN_FDS are handed to the process
            // named by LISTEN_PID, which we checked is us; the OnceLock adopts each exactly
            // once. Anything that turns out not to be a listening TCP socket is released
            // (into_raw_fd) without being closed.
            let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            if listener.local_addr().is_ok() {
                // Close-on-exec, so the program's own children do not hold the port.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                listeners.push(listener);
            } else {
                let _ = listener.into_raw_fd();
            }
        }
        listeners
    })
}

/// (device, inode) of each socket passed down by LISTEN_FDS, recorded before `main`.
static INHERITED_SOCKETS: std::sync::OnceLock<Vec<(u64, u64)>> = std::sync::OnceLock::new();

fn identity(fd: i32) -> Option<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` for a descriptor number (or fails); we read it only on success.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return None;
    }
    let stat = unsafe { stat.assume_init() };
    // dev_t and ino_t are u64 on x86_64 glibc but not on every target.
    #[allow(clippy::unnecessary_cast)]
    let identity = (stat.st_dev as u64, stat.st_ino as u64);
    ((stat.st_mode & libc::S_IFMT) == libc::S_IFSOCK).then_some(identity)
}

pub(crate) fn remember_inherited_sockets() {
    let sockets = passed_descriptors().filter_map(identity).collect();
    for fd in passed_descriptors() {
        // SAFETY: sets close-on-exec on a descriptor handed to this process, so that
        // children the program starts before taking it never hold the port.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let _ = INHERITED_SOCKETS.set(sockets);
}

/// Makes every descriptor of this process that refers to an inherited listening socket, or
/// to one of `held` (sockets cargo hot handed to the program's own `bind`), refer to an
/// unbound socket instead, so the program accepts no new connection (they wait in the kernel
/// for the next program) while it finishes the ones it has. Returns how many descriptors were
/// replaced.
pub(crate) fn stop_accepting(held: &[(u64, u64)]) -> usize {
    let sockets: Vec<(u64, u64)> = INHERITED_SOCKETS.get().into_iter().flatten().chain(held).copied().collect();
    if sockets.is_empty() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    let fds: Vec<i32> = entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    // SAFETY: creates a new socket that this function owns and closes below.
    let dummy = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if dummy < 0 {
        return 0;
    }
    let mut replaced = 0;
    for fd in fds {
        if fd != dummy && identity(fd).is_some_and(|id| sockets.contains(&id)) {
            // SAFETY: dup2 atomically makes `fd` refer to the unbound dummy socket. The
            // descriptor stays valid for whoever owns it (tokio, std), so no owner is
            // invalidated; its next accept() fails (EINVAL) instead of taking a connection.
            // The listening socket itself stays open in cargo hot, with its queue.
            if unsafe { libc::dup2(dummy, fd) } == fd {
                replaced += 1;
            }
        }
    }
    // SAFETY: `dummy` is ours; the duplicates made above keep the socket alive.
    unsafe { libc::close(dummy) };
    replaced
}

/// Starts the agent before `main` when the program runs under cargo hot. Using an ELF
/// constructor means the host program needs no code change at all.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static START_AGENT: extern "C" fn() = {
    extern "C" fn start() {
        crate::agent::start_if_hot();
    }
    start
};
