//! Ports the program binds itself, held by cargo hot across restarts, with no code change.
//!
//! A server that binds its own port (`TcpListener::bind`, actix's `HttpServer::bind`) closes
//! it when it stops; between the old program's exit and the new one's `bind`, connections are
//! refused (4-18 refused polls at 20 ms intervals per restart were measured on real apps).
//! So cargo hot preloads a small library into the program, the bind shim
//! (`held_ports/bind_shim.c`, through `LD_PRELOAD`): its `bind` of a TCP socket to an address
//! with a port asks cargo hot, over a private Unix socket (the broker, here), for the socket it
//! holds for that address. The first time, cargo hot binds the address itself; it keeps that
//! listening socket for the session and hands the same socket to every program after.
//! Connections that arrive during a restart wait in its queue for the next program.
//!
//! Before a restart the running program is drained: the runtime's agent makes its descriptors
//! of the held sockets refer to an unbound socket (see `ParentMessage::Drain`), so it accepts
//! nothing more while it finishes what it has, and the next program takes the queue.
//!
//! Only processes cargo hot started (the program and what it starts) are answered; a socket no
//! program asked for during a whole run is closed at the next restart (the app stopped binding
//! it). Anything the shim cannot hand over (port 0, UDP, Unix sockets, a broker that says no)
//! goes to the real `bind`, so the program sees what it would have seen without cargo hot.
//! `hold-ports = false` (or `--no-hold-ports`) turns all of it off.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::events::{Event, Events};

/// The variable naming the broker's socket, read by the shim.
pub const BROKER_ENV: &str = "CARGO_HOT_BIND";

/// The shim, built by build.rs (absent without a C compiler, or off Linux).
#[cfg(hot_bind_shim)]
const SHIM: Option<&[u8]> = Some(include_bytes!(concat!(env!("OUT_DIR"), "/libhot_bind.so")));
#[cfg(not(hot_bind_shim))]
const SHIM: Option<&[u8]> = None;

/// The sockets cargo hot holds for programs that bind their own ports, and the broker that
/// hands them over.
pub struct HeldPorts {
    table: Arc<Mutex<Table>>,
    broker: PathBuf,
    shim: PathBuf,
}

#[derive(Default)]
struct Table {
    sockets: Vec<Held>,
    /// Counts the programs started; a socket remembers the last run that asked for it.
    run: u64,
}

struct Held {
    address: SocketAddr,
    v6only: bool,
    socket: OwnedFd,
    last_asked_in_run: u64,
    /// Bound for `listen` (kept for the whole session).
    listen: bool,
}

/// One bind, as the shim asks for it: `127.0.0.1:3000 v6only=0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindRequest {
    pub address: SocketAddr,
    pub v6only: bool,
}

impl BindRequest {
    pub fn parse(line: &str) -> Option<BindRequest> {
        let (address, flags) = line.trim().split_once(' ')?;
        let v6only = match flags.trim() {
            "v6only=1" => true,
            "v6only=0" => false,
            _ => return None,
        };
        let address: SocketAddr = address.parse().ok()?;
        (address.port() != 0).then_some(BindRequest { address, v6only })
    }
}

impl HeldPorts {
    /// Writes the shim under `tool_dir`, starts the broker on a socket in `private_dir` (a
    /// directory only this user can enter) and holds the `listen` sockets for the programs'
    /// own binds too. Fails when this cargo-hot was built without the shim.
    pub fn start(tool_dir: &Path, private_dir: &Path, listen: &crate::sockets::Listeners, events: Events) -> Result<Self> {
        let bytes = SHIM.ok_or_else(|| anyhow!("this cargo-hot was built without the bind shim (no C compiler when it was installed)"))?;
        let shim = crate::tool::named_by_content(tool_dir, "libhot-bind", ".so", bytes, 0o644)?;
        let broker = private_dir.join("bind.sock");
        let _ = std::fs::remove_file(&broker);
        let listener = UnixListener::bind(&broker).with_context(|| format!("cannot create {}", broker.display()))?;
        let mut table = Table::default();
        for (address, fd) in listen.sockets() {
            let socket = fd.try_clone().context("cannot share a listening socket")?;
            let v6only = address.is_ipv6() && socket2::SockRef::from(&socket).only_v6().unwrap_or(false);
            table.sockets.push(Held { address, v6only, socket, last_asked_in_run: 0, listen: true });
        }
        let table = Arc::new(Mutex::new(table));
        let shared = table.clone();
        std::thread::Builder::new()
            .name("hot-bind-broker".into())
            .spawn(move || serve(listener, shared, events))
            .context("cannot start the bind broker")?;
        Ok(HeldPorts { table, broker, shim })
    }

    /// The program's environment: the shim preloaded (before any the user preloads: `existing`,
    /// from the program's environment as cargo hot made it, else cargo hot's own), the broker
    /// named.
    pub fn environment(&self, existing: Option<&std::ffi::OsStr>) -> Vec<(OsString, OsString)> {
        let mut preload = OsString::from(&self.shim);
        let existing = existing.map(OsString::from).or_else(|| std::env::var_os("LD_PRELOAD"));
        if let Some(existing) = existing.filter(|v| !v.is_empty()) {
            preload.push(":");
            preload.push(existing);
        }
        vec![("LD_PRELOAD".into(), preload), (BROKER_ENV.into(), self.broker.clone().into())]
    }

    /// (device, inode) of every held socket, for the drain before a restart.
    pub fn identities(&self) -> Vec<(u64, u64)> {
        self.lock().sockets.iter().filter_map(|held| identity(&held.socket)).collect()
    }

    /// Called as a new program starts, after the previous one was stopped: sockets that no
    /// process asked for during the previous run are closed (the app no longer binds them).
    pub fn next_run(&self) {
        let mut table = self.lock();
        let previous = table.run;
        table.sockets.retain(|held| held.listen || previous == 0 || held.last_asked_in_run == previous);
        table.run += 1;
    }

    /// The addresses held now.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.lock().sockets.iter().map(|held| held.address).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The broker: one request per connection, answered at once.
fn serve(listener: UnixListener, table: Arc<Mutex<Table>>, events: Events) {
    let mut announced: HashSet<SocketAddr> = HashSet::new();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let answered = answer(&stream, &table);
        if let Ok(Some(address)) = &answered {
            if announced.insert(*address) {
                events.emit(Event::PortHeld { address: address.to_string() });
            }
        }
        if let Err(err) = answered {
            events.emit(Event::Detail { message: format!("the program's bind was not handed a held socket: {err:#}") });
        }
    }
}

/// Answers one shim: the held socket for its address ('y' and the socket), or 'n' (the shim
/// then binds for real). Returns the address handed over.
fn answer(stream: &UnixStream, table: &Mutex<Table>) -> Result<Option<SocketAddr>> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let refuse = |why: anyhow::Error| {
        let _ = crate::sys::send_byte_with_fd(stream, b'n', None);
        Err(why)
    };
    let pid = crate::sys::peer_pid(stream).ok_or_else(|| anyhow!("cannot tell which process asked"));
    let pid = match pid {
        Ok(pid) => pid,
        Err(err) => return refuse(err),
    };
    if !descends_from_this_process(pid) {
        let _ = crate::sys::send_byte_with_fd(stream, b'n', None);
        return Ok(None);
    }
    let mut line = String::new();
    BufReader::new(std::io::Read::take(stream, 256)).read_line(&mut line)?;
    let Some(request) = BindRequest::parse(&line) else {
        return refuse(anyhow!("cannot read the request {line:?}"));
    };
    let mut table = table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let run = table.run;
    let held = match table.held_for(request) {
        Ok(held) => held,
        Err(err) => return refuse(err),
    };
    held.last_asked_in_run = run;
    crate::sys::send_byte_with_fd(stream, b'y', Some(held.socket.as_raw_fd())).context("cannot send the socket")?;
    Ok(Some(request.address))
}

impl Table {
    /// The socket held for `request`, bound now if none is. A socket held for another address
    /// of the same port (the app moved from 0.0.0.0 to 127.0.0.1) is closed first, unless it
    /// was bound for `listen`.
    fn held_for(&mut self, request: BindRequest) -> Result<&mut Held> {
        let same = |held: &Held| held.address == request.address && (!request.address.is_ipv6() || held.v6only == request.v6only);
        if let Some(index) = self.sockets.iter().position(same) {
            return Ok(&mut self.sockets[index]);
        }
        if let Some(taken) = self.sockets.iter().find(|held| held.listen && held.address.port() == request.address.port()) {
            return Err(anyhow!("port {} is held for --listen {}", request.address.port(), taken.address));
        }
        // Another address of the same port that no program asked for in this run (the app
        // moved from 0.0.0.0 to 127.0.0.1) would refuse this bind: it is closed. One asked for
        // in this run stays (actix binds `localhost:8080` as 127.0.0.1 and ::1).
        let run = self.run;
        self.sockets.retain(|held| held.address.port() != request.address.port() || held.listen || held.last_asked_in_run == run);
        let socket = bind(request)?;
        self.sockets.push(Held { address: request.address, v6only: request.v6only, socket, last_asked_in_run: self.run, listen: false });
        Ok(self.sockets.last_mut().expect("just pushed"))
    }
}

/// A listening socket for the request, as the program's own would have been (SO_REUSEADDR,
/// IPV6_V6ONLY as asked, a deep backlog), kept close-on-exec in cargo hot.
fn bind(request: BindRequest) -> Result<OwnedFd> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(request.address), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if request.address.is_ipv6() {
        socket.set_only_v6(request.v6only)?;
    }
    socket.bind(&request.address.into()).with_context(|| format!("cannot bind {}", request.address))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Whether `pid` is a process cargo hot started, or one of theirs (the ppid chain from
/// /proc reaches this process).
fn descends_from_this_process(mut pid: u32) -> bool {
    let this = std::process::id();
    for _ in 0..32 {
        let Some(parent) = parent_of(pid) else { return false };
        if parent == this {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        pid = parent;
    }
    false
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": the command may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// (device, inode) of a socket: its identity, the same in every process holding a copy.
fn identity(socket: &OwnedFd) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::File::from(socket.try_clone().ok()?).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_port_zero_is_not_held() {
        assert_eq!(
            BindRequest::parse("127.0.0.1:3000 v6only=0\n"),
            Some(BindRequest { address: "127.0.0.1:3000".parse().unwrap(), v6only: false })
        );
        assert_eq!(BindRequest::parse("[::]:8080 v6only=1"), Some(BindRequest { address: "[::]:8080".parse().unwrap(), v6only: true }));
        assert_eq!(BindRequest::parse("127.0.0.1:0 v6only=0"), None);
        assert_eq!(BindRequest::parse("127.0.0.1:3000"), None);
        assert_eq!(BindRequest::parse("localhost:3000 v6only=0"), None);
    }

    #[test]
    fn this_process_descends_from_its_parent_only() {
        let child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(descends_from_this_process(child.id()));
        assert!(!descends_from_this_process(std::process::id()), "not its own descendant");
        assert!(!descends_from_this_process(1));
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn free_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }

    #[test]
    fn one_socket_per_address_for_every_run_and_released_when_no_run_asks() {
        let mut table = Table { run: 1, ..Table::default() };
        let address = free_port();
        let request = BindRequest { address, v6only: false };
        let first = identity(&table.held_for(request).unwrap().socket).unwrap();
        let again = identity(&table.held_for(request).unwrap().socket).unwrap();
        assert_eq!(first, again, "the same socket for the same address");
        // While held, the address cannot be bound by anyone else: connections queue here.
        assert!(std::net::TcpListener::bind(address).is_err());
        std::net::TcpStream::connect(address).expect("a connection waits in the held socket's queue");

        // This process's descriptors of a socket, by its identity.
        let descriptors_of = |(_, inode): (u64, u64)| {
            let socket = format!("socket:[{inode}]");
            std::fs::read_dir("/proc/self/fd").unwrap().flatten().filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == socket)).count()
        };
        assert_eq!(descriptors_of(first), 1, "held");
        let held = HeldPorts { table: Arc::new(Mutex::new(table)), broker: PathBuf::new(), shim: PathBuf::new() };
        held.next_run(); // run 1 asked for it: kept
        assert_eq!(held.addresses(), vec![address]);
        held.next_run(); // run 2 did not: released
        assert!(held.addresses().is_empty());
        // Closed: no descriptor of this process refers to it any more. (Binding or connecting
        // to the port again would race with the tests running beside this one, which may be
        // handed the same free port.)
        assert_eq!(descriptors_of(first), 0, "the held socket was closed");
    }

    #[test]
    fn another_address_of_the_same_port_replaces_the_held_one_from_an_earlier_run() {
        let mut table = Table { run: 1, ..Table::default() };
        let address = free_port();
        table.held_for(BindRequest { address: SocketAddr::from(([0, 0, 0, 0], address.port())), v6only: false }).unwrap();
        table.run = 2;
        table.held_for(BindRequest { address, v6only: false }).unwrap();
        assert_eq!(table.sockets.len(), 1);
        assert_eq!(table.sockets[0].address, address);
    }

    #[test]
    fn every_address_a_run_binds_on_one_port_is_held() {
        // actix's `bind("localhost:P")`: 127.0.0.1 and ::1, both asked in the same run.
        let mut table = Table { run: 1, ..Table::default() };
        let address = free_port();
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, address.port()));
        table.held_for(BindRequest { address, v6only: false }).unwrap();
        if std::net::TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))).is_err() {
            return; // no IPv6 loopback here
        }
        table.held_for(BindRequest { address: v6, v6only: true }).unwrap();
        table.run = 2;
        table.held_for(BindRequest { address, v6only: false }).unwrap();
        table.held_for(BindRequest { address: v6, v6only: true }).unwrap();
        assert_eq!(table.sockets.len(), 2, "both kept, run after run");
    }
}
