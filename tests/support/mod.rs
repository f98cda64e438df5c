//! Shared by the integration tests: copies of test-fixtures/ in temp dirs, a running
//! `cargo hot run`, and a minimal HTTP client (std only, one request per connection).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CARGO_HOT: &str = env!("CARGO_BIN_EXE_cargo-hot");

/// One target dir for every test, so the fixture's dependencies are compiled once.
pub fn shared_target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("fixture-target")
}

/// Cargo names the units of path packages by a hash relative to the workspace root, so two
/// copies of a fixture building in the shared target dir at once would overwrite each
/// other's libraries. Tests that build hold this lock (across test threads and processes).
pub struct BuildLock(std::fs::File);

pub fn exclusive_build() -> BuildLock {
    let dir = shared_target_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join(".cargo-hot-tests.lock")).unwrap();
    file.lock().unwrap();
    BuildLock(file)
}

pub fn runtime_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime")
}

/// A private copy of a fixture workspace (or, for the benchmark's generated app, a
/// workspace kept in place).
pub struct Fixture {
    root: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn copy(name: &str) -> Fixture {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-fixtures").join(name);
        let dir = tempfile::Builder::new().prefix(&format!("hot-{name}-")).tempdir().unwrap();
        copy_tree(&source, dir.path());
        let fixture = Fixture { root: dir.path().to_path_buf(), _dir: Some(dir) };
        // The fixture names the runtime by a path relative to this repository.
        for manifest in fixture.manifests() {
            let text = std::fs::read_to_string(&manifest).unwrap();
            let runtime = format!("path = {:?}", runtime_dir().display().to_string());
            let text = text.replace("path = \"../../../../runtime\"", &runtime).replace("path = \"../../runtime\"", &runtime);
            std::fs::write(&manifest, text).unwrap();
        }
        fixture
    }

    /// A workspace that stays where it is (not removed when dropped).
    #[allow(dead_code)]
    pub fn at(root: PathBuf) -> Fixture {
        Fixture { root, _dir: None }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root().join(relative)
    }

    /// Every file of the copy.
    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }

    fn manifests(&self) -> Vec<PathBuf> {
        self.files().into_iter().filter(|p| p.file_name().is_some_and(|n| n == "Cargo.toml")).collect()
    }

    /// Marks every file as modified now. Cargo fingerprints path packages relative to the
    /// workspace root, so after another copy of the same fixture was built in the shared
    /// target dir, this copy's older files would look fresh; call it holding the build lock.
    pub fn touch_all(&self) {
        let now = std::time::SystemTime::now();
        for path in self.files() {
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(now).unwrap();
        }
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap()
    }

    /// Replaces `from` (which must occur) by `to` in a file, written in place like an editor.
    pub fn edit(&self, relative: &str, from: &str, to: &str) {
        let text = self.read(relative);
        assert!(text.contains(from), "{relative} does not contain {from:?}");
        std::fs::write(self.path(relative), text.replacen(from, to, 1)).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `cargo hot explain ARGS` in a fixture (holding the build lock is the caller's business);
/// its standard output, which must be a success.
pub fn explain(fixture: &Fixture, args: &[&str]) -> String {
    let output = Command::new(CARGO_HOT)
        .args(["hot", "explain"])
        .args(args)
        .current_dir(fixture.root())
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "explain failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Where a [`HotRun`] writes cargo hot's output.
pub enum Logs {
    /// Both streams in one file: a temporary one, or the path given (as `> dev.log 2>&1`).
    Combined(Option<PathBuf>),
    /// Standard output in the log, standard error in the file given.
    Split { stderr: PathBuf },
}

/// `cargo hot run` on a fixture, with its output captured to a file for assertions.
pub struct HotRun {
    child: std::sync::Mutex<Child>,
    pub port: u16,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
    _lock: BuildLock,
}

impl HotRun {
    pub fn start(fixture: &Fixture, args: &[&str]) -> HotRun {
        Self::start_with(fixture, args, &[], free_port())
    }

    /// Like `start`, with extra environment for cargo hot (and so the program), on `port`.
    pub fn start_with(fixture: &Fixture, args: &[&str], env: &[(&str, &str)], port: u16) -> HotRun {
        Self::launch(fixture, args, env, port, Logs::Combined(None))
    }

    /// Like `start`, with cargo hot's standard output and standard error going where `logs`
    /// says (the log that `log()` reads is standard output, or both).
    pub fn launch(fixture: &Fixture, args: &[&str], env: &[(&str, &str)], port: u16, logs: Logs) -> HotRun {
        let lock = exclusive_build();
        fixture.touch_all();
        let log_dir = tempfile::tempdir().unwrap();
        let (log, err) = match logs {
            Logs::Combined(at) => (at.unwrap_or_else(|| log_dir.path().join("cargo-hot.log")), None),
            Logs::Split { stderr } => (log_dir.path().join("stdout.log"), Some(stderr)),
        };
        let out = std::fs::File::create(&log).unwrap();
        let err = match err {
            Some(path) => std::fs::File::create(path).unwrap(),
            None => out.try_clone().unwrap(),
        };
        let child = Command::new(CARGO_HOT)
            .arg("hot")
            .arg("run")
            .args(args)
            .current_dir(fixture.root())
            .env("CARGO_TARGET_DIR", shared_target_dir())
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        let run = HotRun { child: std::sync::Mutex::new(child), port, log, _log_dir: log_dir, _lock: lock };
        // The first build may compile the fixture's dependencies; a failed one ends the wait.
        let deadline = Instant::now() + Duration::from_secs(600);
        while run.get("/pid").is_err() {
            let log = run.log();
            assert!(!log.contains("error: the build failed"), "the first build failed:\n{log}");
            assert!(run.exited().is_none(), "cargo hot exited before the program answered:\n{log}");
            assert!(Instant::now() < deadline, "the program never answered on /pid:\n{log}");
            std::thread::sleep(Duration::from_millis(25));
        }
        run
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (counting from `after` bytes), returns the log.
    pub fn wait_for_log(&self, needle: &str, after: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.exited();
            let log = self.log();
            if log.get(after..).is_some_and(|tail| tail.contains(needle)) {
                return log;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?} in cargo hot's output:\n{log}");
            assert!(exited.is_none(), "cargo hot exited ({}) without printing {needle:?}:\n{log}", exited.unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits, reading the log every millisecond, until `needle` occurs `count` times.
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log().matches(needle).count() < count {
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?} x{count}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until `needle` occurs `count` times in the log after byte offset `after`.
    pub fn wait_for_log_count_after(&self, needle: &str, count: usize, after: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.log().get(after..).map_or(0, |tail| tail.matches(needle).count()) < count {
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?} after offset {after}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn get(&self, path: &str) -> Result<String, String> {
        http(self.port, "GET", path, "")
    }

    pub fn post(&self, path: &str, body: &str) -> Result<String, String> {
        http(self.port, "POST", path, body)
    }

    /// The pid of cargo hot itself (its session's files are named by it).
    pub fn session_pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    pub fn pid(&self) -> u32 {
        self.get("/pid").unwrap().trim().parse().unwrap()
    }

    /// Polls `path` until `accept` is true for the body; returns that body.
    pub fn wait_for_response(&self, path: &str, timeout: Duration, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.exited();
            let last = match self.get(path) {
                Ok(body) if accept(&body) => return body,
                Ok(body) => body,
                Err(err) => err,
            };
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {path}; last answer: {last:?}\ncargo hot's output:\n{}",
                self.log()
            );
            assert!(exited.is_none(), "cargo hot exited ({}); last answer on {path}: {last:?}\n{}", exited.unwrap(), self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Like `wait_for_response`, polling every 2 ms (for timing: the poll interval bounds
    /// the measurement's resolution).
    pub fn wait_for_response_fast(&self, path: &str, timeout: Duration, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(body) = self.get(path) {
                if accept(&body) {
                    return body;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting on {path}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Whether cargo hot has exited (a wait for output or an answer then fails at once).
    fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    pub fn cargo_hot_pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Stops cargo hot as Ctrl-C would; returns its exit status and its whole log.
    pub fn interrupt_with_log(self) -> (std::process::ExitStatus, String) {
        let log = self.log.clone();
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("log");
        // The log's directory goes with `self`: read the log after the exit, from a link.
        std::fs::hard_link(&log, &kept).unwrap();
        let status = self.interrupt();
        (status, std::fs::read_to_string(kept).unwrap())
    }

    /// Stops cargo hot as Ctrl-C would; returns its exit status.
    pub fn interrupt(self) -> std::process::ExitStatus {
        unsafe_free_kill(self.child.lock().unwrap().id(), "INT");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "cargo hot did not stop on SIGINT:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HotRun {
    fn drop(&mut self) {
        if self.child.lock().unwrap().try_wait().ok().flatten().is_none() {
            unsafe_free_kill(self.child.lock().unwrap().id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.child.lock().unwrap().try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut child = self.child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unsafe_free_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

/// One HTTP/1.1 request with `Connection: close`; the body of a 2xx answer, else an error.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("read: {e}"))?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("malformed response: {response:?}"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(format!("status {status}: {body}"));
    }
    Ok(body.to_string())
}

/// An HTTP response as the tests look at it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), whatever the status.
pub fn request(port: u16, method: &str, path: &str) -> Result<Response, String> {
    let mut connection = KeepAlive::connect(port)?;
    connection.send(method, path, "close")
}

/// One HTTP/1.1 connection kept open across requests, as a browser or a proxy keeps it.
pub struct KeepAlive {
    stream: TcpStream,
    reader: std::io::BufReader<TcpStream>,
}

impl KeepAlive {
    pub fn connect(port: u16) -> Result<KeepAlive, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let reader = std::io::BufReader::new(stream.try_clone().unwrap());
        Ok(KeepAlive { stream, reader })
    }

    /// Which local port the connection uses: the same one before and after means the same
    /// connection.
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    pub fn get(&mut self, path: &str) -> Result<Response, String> {
        self.send("GET", path, "keep-alive")
    }

    fn send(&mut self, method: &str, path: &str, connection: &str) -> Result<Response, String> {
        use std::io::BufRead;
        let request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\nContent-Length: 0\r\n\r\n");
        self.stream.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).map_err(|e| format!("read: {e}"))?;
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status line: {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let length: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).map_err(|e| format!("read body: {e}"))?;
        Ok(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
    }
}

/// Clients sending requests in a loop (one connection each, every 2 ms per thread), counting
/// what fails: the load that restarts and patches must not disturb. Bounded in time, loopback
/// only.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16, path: &'static str, threads: usize) -> Load {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(600);
                    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                        match http(port, "GET", path, "") {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(err) => failures.lock().unwrap().push(err),
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Load { stop, ok, failures, threads }
    }

    /// Stops the clients: (requests answered, the errors of those that failed).
    pub fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.ok.load(std::sync::atomic::Ordering::SeqCst), failures)
    }
}
