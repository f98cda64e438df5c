//! Everything unsafe in the runtime lives here: the slots that exported functions call
//! through, loading a patch with `dlopen`, and the constructor that starts the agent.

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

/// Loads the shared object at `path` and points the slot of each export at the patch's
/// entry. Every symbol is resolved before any slot is switched: on error nothing changes.
/// Returns the number of slots switched.
pub(crate) fn load_patch(path: &str, exports: &[String]) -> Result<usize, String> {
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
    for (slot, entry) in &switches {
        // SAFETY: `slot` is the address of a `Slot<F>` static of the running program (found
        // by its exported name in the global scope, which excludes RTLD_LOCAL patches), and
        // `Slot` is `repr(transparent)` over `AtomicPtr<()>`, so this is an aligned, live
        // atomic. The Release store pairs with the Acquire load in `Slot::get`, so a caller
        // that sees the new pointer also sees the fully loaded patch.
        unsafe { (**slot).store(*entry, Ordering::Release) };
    }
    Ok(switches.len())
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
