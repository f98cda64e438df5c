//! Listening sockets that outlive the program, and telling when the program is ready.
//!
//! With `listen = ["127.0.0.1:3000"]`, cargo hot binds each address once and hands the
//! sockets to every program it starts, using the systemd convention (`LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`, descriptors from 3), so `hot::listener` and the `listenfd`
//! crate both find them. While one program stops and the next starts, the kernel queues new
//! connections on the socket cargo hot keeps open: none is refused.
//!
//! `LISTEN_PID` must be the program's own PID, which is not known before the fork, and
//! setting variables between fork and exec is not async-signal-safe. So cargo-hot runs as a
//! small trampoline first ([`run_trampoline`]): it moves the sockets to descriptors 3, 4, …,
//! sets `LISTEN_PID` to its own PID and `exec`s the program, which keeps that PID.

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::{anyhow, Result};

/// Set for the trampoline: the descriptors (comma-separated) that carry the sockets.
pub use hot::protocol::TRAMPOLINE_ENV;
/// Descriptors passed to a program start at 3 (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;
/// cargo hot keeps its copies above this, so moving them to 3.. never overwrites one.
const HIGH_FD: RawFd = 100;

/// The sockets cargo hot holds for the whole session.
pub struct Listeners {
    sockets: Vec<(SocketAddr, OwnedFd)>,
}

impl Listeners {
    /// Binds every address (SO_REUSEADDR, a deep backlog). A port in use is an error that
    /// says what to do.
    pub fn bind(addresses: &[SocketAddr]) -> Result<Self> {
        let mut sockets = Vec::new();
        for address in addresses {
            let socket = socket2::Socket::new(socket2::Domain::for_address(*address), socket2::Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            if let Err(err) = socket.bind(&(*address).into()) {
                return Err(if err.kind() == std::io::ErrorKind::AddrInUse {
                    anyhow!(
                        "cannot listen on {address}: the address is already in use. Another process holds it \
                         (find it with `ss -ltnp 'sport = :{}'`); stop it or pick another address with --listen",
                        address.port()
                    )
                } else {
                    anyhow!("cannot listen on {address}: {err}")
                });
            }
            socket.listen(1024)?;
            let fd: OwnedFd = socket.into();
            // Keep cargo hot's copy high and close-on-exec: only the trampoline inherits it.
            let high = crate::sys::dup_cloexec_at_least(&fd, HIGH_FD)?;
            sockets.push((*address, high));
        }
        Ok(Listeners { sockets })
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(address, _)| *address).collect()
    }

    /// Each address and cargo hot's socket for it.
    pub fn sockets(&self) -> impl Iterator<Item = (SocketAddr, &OwnedFd)> {
        self.sockets.iter().map(|(address, fd)| (*address, fd))
    }

    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.sockets.iter().map(|(_, fd)| fd.as_raw_fd()).collect()
    }

    /// `LISTEN_FDNAMES`: one name per socket, the address with `:` (the separator) spelled `_`.
    pub fn names(&self) -> String {
        self.sockets.iter().map(|(address, _)| address.to_string().replace(':', "_")).collect::<Vec<_>>().join(":")
    }
}

/// True when this process was started as the trampoline.
pub fn is_trampoline() -> bool {
    std::env::var_os(TRAMPOLINE_ENV).is_some()
}

/// The trampoline: `cargo-hot PROGRAM ARGS...` with the sockets on the descriptors named by
/// [`TRAMPOLINE_ENV`]. Moves them to 3.., sets the LISTEN_* variables, becomes the program.
pub fn run_trampoline() -> ExitCode {
    let sources: Vec<RawFd> = std::env::var(TRAMPOLINE_ENV)
        .unwrap_or_default()
        .split(',')
        .filter_map(|fd| fd.parse().ok())
        .collect();
    std::env::remove_var(TRAMPOLINE_ENV);
    for (index, source) in sources.iter().enumerate() {
        if let Err(err) = crate::sys::move_fd(*source, FIRST_FD + index as RawFd) {
            eprintln!("cargo-hot: cannot pass the listening socket on: {err}");
            return ExitCode::from(127);
        }
    }
    std::env::set_var("LISTEN_FDS", sources.len().to_string());
    std::env::set_var("LISTEN_PID", std::process::id().to_string());
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("cargo-hot: the trampoline needs a program to run");
        return ExitCode::from(127);
    };
    let rest: Vec<OsString> = args.collect();
    let err = std::process::Command::new(&program).args(rest).exec();
    eprintln!("cargo-hot: cannot start {}: {err}", program.to_string_lossy());
    ExitCode::from(127)
}

/// Whether the program is accepting connections: one of its listening TCP sockets is being
/// waited on, either registered with an epoll instance (tokio, mio, async-std) or by a
/// thread blocked in `accept` (std's blocking servers). Read from /proc, so it needs no help
/// from the program. Returns the listening address.
pub fn accepting(pid: u32) -> Option<SocketAddr> {
    let listening = listening_sockets(pid);
    if listening.is_empty() {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut socket_fds: Vec<(RawFd, SocketAddr)> = Vec::new();
    let mut epoll_fds: Vec<RawFd> = Vec::new();
    for entry in fds.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            if let Some((_, address)) = listening.iter().find(|(i, _)| i == inode) {
                socket_fds.push((fd, *address));
            }
        } else if target == "anon_inode:[eventpoll]" {
            epoll_fds.push(fd);
        }
    }
    for epoll in epoll_fds {
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epoll}")) else { continue };
        let watched: HashSet<RawFd> = info
            .lines()
            .filter_map(|l| l.strip_prefix("tfd:"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        if let Some((_, address)) = socket_fds.iter().find(|(fd, _)| watched.contains(fd)) {
            return Some(*address);
        }
    }
    // accept(2) is syscall 43 and accept4(2) 288 on x86_64; 202 and 242 on aarch64.
    let accept_calls: &[&str] = if cfg!(target_arch = "aarch64") { &["202", "242"] } else { &["43", "288"] };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let Ok(syscall) = std::fs::read_to_string(task.path().join("syscall")) else { continue };
        let mut fields = syscall.split_whitespace();
        let (Some(number), Some(first_arg)) = (fields.next(), fields.next()) else { continue };
        if accept_calls.contains(&number) {
            let fd = RawFd::from_str_radix(first_arg.trim_start_matches("0x"), 16).unwrap_or(-1);
            if let Some((_, address)) = socket_fds.iter().find(|(f, _)| *f == fd) {
                return Some(*address);
            }
        }
    }
    None
}

/// (inode, address) of every TCP socket in LISTEN state in the program's network namespace.
fn listening_sockets(pid: u32) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else { continue };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            if let Some(address) = parse_proc_address(fields[1], v6) {
                out.push((fields[9].to_string(), address));
            }
        }
    }
    out
}

/// `0100007F:0BB8` → 127.0.0.1:3000 (the address words are in host byte order).
fn parse_proc_address(text: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !v6 {
        // The kernel prints the address's 32-bit word as a native integer.
        let word = u32::from_str_radix(ip, 16).ok()?;
        return Some(SocketAddr::from((std::net::Ipv4Addr::from(word.to_ne_bytes()), port)));
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in ip.as_bytes().chunks(8).enumerate().take(4) {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some(SocketAddr::from((std::net::Ipv6Addr::from(bytes), port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_decode() {
        assert_eq!(parse_proc_address("0100007F:0BB8", false), Some("127.0.0.1:3000".parse().unwrap()));
        assert_eq!(
            parse_proc_address("00000000000000000000000001000000:1F90", true),
            Some("[::1]:8080".parse().unwrap())
        );
    }

    #[test]
    fn a_blocking_accept_is_seen_as_ready() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        assert_eq!(accepting(std::process::id()), None, "listening but nobody accepts yet");
        let waiter = std::thread::spawn(move || listener.accept().map(|_| ()));
        let mut seen = None;
        for _ in 0..400 {
            seen = accepting(std::process::id());
            if seen.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(seen, Some(address));
        std::net::TcpStream::connect(address).unwrap();
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn a_port_in_use_says_what_to_do() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = Listeners::bind(&[taken.local_addr().unwrap()]).err().unwrap().to_string();
        assert!(err.contains("already in use") && err.contains("--listen"), "{err}");
    }
}
