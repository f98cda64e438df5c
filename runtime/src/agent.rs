//! The in-process agent: started before `main` only when the program runs under `cargo hot`.
//! It connects to the parent's socket and serves reload requests until the parent goes away.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use crate::loader;
use crate::protocol::{self, ChildMessage, ParentMessage, ReloadOutcome, PROTOCOL_VERSION};

/// Called from the ELF constructor in [`loader`]. Does nothing unless [`crate::IPC_ENV`] is set.
pub(crate) fn start_if_hot() {
    let Some(path) = std::env::var_os(crate::IPC_ENV) else { return };
    if std::env::var_os(crate::protocol::TRAMPOLINE_ENV).is_some() {
        return;
    }
    // Before `main` can move or wrap them: which sockets did cargo hot pass down?
    loader::remember_inherited_sockets();
    let path = PathBuf::from(path);
    let spawned = std::thread::Builder::new().name("cargo-hot-agent".into()).spawn(move || {
        if let Err(err) = serve(&path) {
            eprintln!("[hot] patch agent stopped: {err}");
        }
    });
    if let Err(err) = spawned {
        eprintln!("[hot] cannot start the patch agent: {err}");
    }
}

fn serve(path: &std::path::Path) -> std::io::Result<()> {
    let mut stream = UnixStream::connect(path)?;
    let hello = ChildMessage::Hello {
        pid: std::process::id(),
        protocol: PROTOCOL_VERSION,
        anchor: loader::anchor_address(),
        tls_offset: loader::executable_tls_offset(),
        executable_bias: loader::executable_bias(),
    };
    stream.write_all(protocol::encode(&hello).as_bytes())?;
    let reader = BufReader::new(stream.try_clone()?);
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match protocol::decode::<ParentMessage>(&line) {
            Ok(ParentMessage::Reload { id, patch, exports, redirects }) => {
                ChildMessage::Reloaded { id, outcome: reload(&patch, &exports, &redirects) }
            }
            Ok(ParentMessage::Drain { id, sockets }) => ChildMessage::Drained { id, descriptors: loader::stop_accepting(&sockets) },
            Err(err) => {
                eprintln!("[hot] ignoring a message this runtime does not understand ({err}); is the hot crate older than cargo-hot?");
                continue;
            }
        };
        stream.write_all(protocol::encode(&reply).as_bytes())?;
    }
    Ok(())
}

/// Loads the patch and switches the exports, then lets the new code rebuild what the app
/// built from boundary code (routers, values, scopes) and runs the reload hooks.
fn reload(patch: &str, exports: &[String], redirects: &[protocol::Redirect]) -> ReloadOutcome {
    let started = Instant::now();
    match loader::load_patch(patch, exports, redirects) {
        Ok(loaded) => {
            let load_micros = started.elapsed().as_micros() as u64;
            let rebuilt = crate::lifecycle::after_patch();
            ReloadOutcome::Ok { load_micros, switched: loaded.switched, redirected: loaded.redirected, base: loaded.base, rebuilt }
        }
        Err(message) => ReloadOutcome::Error { message },
    }
}
