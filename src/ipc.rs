//! The parent's side of the private channel to the running program (protocol in
//! `hot::protocol`). A Unix socket in cargo hot's session directory; each child started by
//! cargo hot connects once and says hello with its PID.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hot::protocol::{self, ChildMessage, ParentMessage, Redirect, ReloadOutcome, PROTOCOL_VERSION};

pub struct IpcServer {
    listener: UnixListener,
    path: PathBuf,
    next_id: u64,
    connection: Option<Connection>,
}

struct Connection {
    pid: u32,
    info: ProgramInfo,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

/// What the program's runtime said about itself when it connected: what binding a patch's
/// statics to the program's own copies needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgramInfo {
    /// Run-time address of the runtime's anchor symbol (0 if the runtime did not say).
    pub anchor: u64,
    /// Offset from the thread pointer to the executable's thread-local block.
    pub tls_offset: Option<i64>,
    /// The executable's load bias, as the runtime reports it (None from an older runtime).
    pub executable_bias: Option<u64>,
}

impl IpcServer {
    /// Binds a fresh socket at `path` (a stale one from a killed session is replaced).
    pub fn bind(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).with_context(|| format!("cannot create the IPC socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(IpcServer { listener, path: path.to_path_buf(), next_id: 1, connection: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forgets the connection of a child that was stopped.
    pub fn disconnect(&mut self) {
        self.connection = None;
    }

    /// Waits up to `timeout` for the child `pid` to connect (it normally has long before).
    fn connection_for(&mut self, pid: u32, timeout: Duration) -> Result<&mut Connection> {
        if self.connection.as_ref().is_some_and(|c| c.pid != pid) {
            self.connection = None;
        }
        let deadline = Instant::now() + timeout;
        while self.connection.is_none() {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Some(connection) = handshake(stream)? {
                        if connection.pid == pid {
                            self.connection = Some(connection);
                        }
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        bail!(
                            "the program (pid {pid}) never connected to cargo hot; does it depend on `hot-runtime` (with `#[hot::export]` functions in the boundary)?"
                        );
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(self.connection.as_mut().expect("set above"))
    }

    /// What the child `pid` said when it connected (waiting up to `timeout` for it to).
    pub fn program_info(&mut self, pid: u32, timeout: Duration) -> Result<ProgramInfo> {
        Ok(self.connection_for(pid, timeout)?.info)
    }

    /// Asks the child `pid` to stop accepting on the inherited sockets and on `held` (the
    /// identities of sockets handed to its own binds); returns how many descriptors it replaced.
    pub fn drain(&mut self, pid: u32, held: Vec<(u64, u64)>, timeout: Duration) -> Result<usize> {
        let id = self.take_id();
        match self.request(pid, ParentMessage::Drain { id, sockets: held }, timeout)? {
            ChildMessage::Drained { descriptors, .. } => Ok(descriptors),
            other => bail!("unexpected answer to drain: {other:?}"),
        }
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Asks the child `pid` to load `patch` and switch `exports`; waits for its answer.
    pub fn reload(&mut self, pid: u32, patch: &Path, exports: &[String], redirects: &[Redirect], timeout: Duration) -> Result<ReloadOutcome> {
        let id = self.take_id();
        let message = ParentMessage::Reload { id, patch: patch.display().to_string(), exports: exports.to_vec(), redirects: redirects.to_vec() };
        match self.request(pid, message, timeout)? {
            ChildMessage::Reloaded { outcome, .. } => Ok(outcome),
            other => bail!("unexpected answer to reload: {other:?}"),
        }
    }

    /// Sends one request and waits for the answer with the same id.
    fn request(&mut self, pid: u32, message: ParentMessage, timeout: Duration) -> Result<ChildMessage> {
        let id = match &message {
            ParentMessage::Reload { id, .. } | ParentMessage::Drain { id, .. } => *id,
        };
        let result = (|| {
            let connection = self.connection_for(pid, Duration::from_secs(3))?;
            connection.writer.write_all(protocol::encode(&message).as_bytes())?;
            connection.reader.get_ref().set_read_timeout(Some(timeout))?;
            let mut line = String::new();
            loop {
                line.clear();
                if connection.reader.read_line(&mut line)? == 0 {
                    bail!("the program closed the channel before answering");
                }
                match protocol::decode::<ChildMessage>(&line) {
                    Ok(answer @ (ChildMessage::Reloaded { id: answered, .. } | ChildMessage::Drained { id: answered, .. }))
                        if answered == id =>
                    {
                        return Ok(answer)
                    }
                    Ok(_) => continue,
                    Err(err) => bail!("the program sent a message cargo hot does not understand ({err}): {}", line.trim()),
                }
            }
        })();
        if result.is_err() {
            self.connection = None;
        }
        result
    }
}

impl Drop for IpcServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent().filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("cargo-hot-"))) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Reads the hello of a new connection. A child that speaks another protocol is ignored
/// (cargo hot will restart it instead of patching).
fn handshake(stream: UnixStream) -> Result<Option<Connection>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return Ok(None);
    }
    match protocol::decode::<ChildMessage>(&line) {
        Ok(ChildMessage::Hello { pid, protocol, anchor, tls_offset, executable_bias }) if protocol == PROTOCOL_VERSION => {
            Ok(Some(Connection { pid, info: ProgramInfo { anchor, tls_offset, executable_bias }, writer: stream, reader }))
        }
        Ok(ChildMessage::Hello { protocol, .. }) => Err(anyhow!(
            "the program's `hot-runtime` speaks protocol {protocol}, this cargo-hot speaks {PROTOCOL_VERSION}; use matching versions"
        )),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake child on a thread: says hello, answers one reload the way the runtime does.
    #[test]
    fn reload_round_trip_with_a_fake_child() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipc.sock");
        let mut server = IpcServer::bind(&path).unwrap();
        let child_path = path.clone();
        let child = std::thread::spawn(move || {
            // A stale client from another process first: it must be skipped.
            let mut stale = UnixStream::connect(&child_path).unwrap();
            let hello = |pid| ChildMessage::Hello { pid, protocol: PROTOCOL_VERSION, anchor: 0x5000, tls_offset: Some(-64), executable_bias: Some(0x4000) };
            stale.write_all(protocol::encode(&hello(1)).as_bytes()).unwrap();
            let mut stream = UnixStream::connect(&child_path).unwrap();
            stream.write_all(protocol::encode(&hello(4242)).as_bytes()).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let ParentMessage::Reload { id, exports, .. } = protocol::decode(&line).unwrap() else { panic!("expected a reload") };
            let outcome = ReloadOutcome::Ok { load_micros: 5, switched: exports.len(), redirected: 0, base: 0x7000, rebuilt: vec![] };
            let reply = ChildMessage::Reloaded { id, outcome };
            stream.write_all(protocol::encode(&reply).as_bytes()).unwrap();
            drop(stale);
        });
        let outcome = server.reload(4242, Path::new("/p.so"), &["h::a::h1".into()], &[], Duration::from_secs(5)).unwrap();
        assert_eq!(outcome, ReloadOutcome::Ok { load_micros: 5, switched: 1, redirected: 0, base: 0x7000, rebuilt: vec![] });
        assert_eq!(server.program_info(4242, Duration::from_secs(1)).unwrap(), ProgramInfo { anchor: 0x5000, tls_offset: Some(-64), executable_bias: Some(0x4000) });
        child.join().unwrap();
    }

    #[test]
    fn a_child_that_never_connects_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let mut server = IpcServer::bind(&dir.path().join("ipc.sock")).unwrap();
        let err = server.reload(99, Path::new("/p.so"), &[], &[], Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("never connected"), "{err}");
    }
}
