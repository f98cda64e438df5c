//! What cargo hot tells the developer. During a session, one thread renders the event stream
//! (see `events`): as lines, colours and progress bars on a terminal ([`terminal`]), or as
//! JSON objects on standard output ([`json`]). The program's own output passes through the
//! same thread, so it never tears a progress bar.
//!
//! Before a session (planning errors, `explain`, `init`), the free functions below print
//! directly.

pub mod json;
pub mod terminal;
pub mod words;

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::OnceLock;
use std::thread::JoinHandle;

use crate::events::{Event, Events};

/// What the UI thread receives.
pub enum Message {
    Event(Event),
    /// Output of the program, forwarded as it comes.
    Output { stream: Stream, bytes: Vec<u8> },
    /// Stop after everything before it was rendered.
    Finish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Human,
    /// One JSON object per line on standard output.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// Outcomes and errors only.
    Quiet,
    #[default]
    Normal,
    /// Also every ignored change and each command run.
    Verbose,
}

/// How to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    pub verbosity: Verbosity,
    /// Colours (a terminal, and `NO_COLOR` unset).
    pub color: bool,
    /// Progress bars and spinners (standard error is a terminal).
    pub bars: bool,
}

impl Options {
    pub fn detect(format: Format, verbosity: Verbosity) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Options { format, verbosity, color: terminal && no_color_unset(), bars: terminal && format == Format::Human }
    }
}

fn no_color_unset() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether the terminal shows an event at this verbosity: `-q` keeps outcomes and errors,
/// `-v` adds every repeated ignored change, each command run and each program stop.
pub fn shown(event: &Event, verbosity: Verbosity) -> bool {
    match event {
        Event::Command { .. } | Event::Detail { .. } | Event::Stopped { forced: false, .. } => verbosity >= Verbosity::Verbose,
        Event::Ignored { again, .. } => verbosity >= Verbosity::Verbose || (!again && verbosity >= Verbosity::Normal),
        Event::Patched(_)
        | Event::Restarted { .. }
        | Event::Started { .. }
        | Event::Crashed(_)
        | Event::CompileFailed { .. }
        | Event::PatchRejected { .. }
        | Event::Diagnostic(_)
        | Event::CargoOutput { status: false, .. }
        | Event::BuildFinished { ok: false, .. }
        | Event::Stopped { forced: true, .. }
        | Event::Error { .. }
        | Event::Fatal { .. }
        | Event::Warning { .. }
        | Event::Cleared => true,
        _ => verbosity >= Verbosity::Normal,
    }
}

/// Whether the JSON stream has an event: all of them, except repeated ignored changes and
/// commands without `-v`, and cargo's status lines (progress events carry the same).
pub fn in_json(event: &Event, verbosity: Verbosity) -> bool {
    match event {
        Event::Command { .. } | Event::Detail { .. } | Event::Ignored { again: true, .. } => verbosity >= Verbosity::Verbose,
        Event::CargoOutput { status, .. } => !status,
        _ => true,
    }
}

/// The UI thread and the handles that feed it.
pub struct Ui {
    sender: Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl Ui {
    pub fn start(options: Options) -> Ui {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cargo-hot-ui".into())
            .spawn(move || render(options, receiver))
            .expect("a thread for the UI");
        Ui { sender, thread: Some(thread) }
    }

    pub fn events(&self) -> Events {
        Events::new(self.sender.clone())
    }

    pub fn output(&self) -> OutputSink {
        OutputSink(self.sender.clone())
    }

    /// Renders what was sent so far, then stops the thread.
    pub fn finish(mut self) {
        let _ = self.sender.send(Message::Finish);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the program's output goes: through the UI thread.
#[derive(Clone)]
pub struct OutputSink(Sender<Message>);

impl OutputSink {
    pub fn write(&self, stream: Stream, bytes: &[u8]) {
        let _ = self.0.send(Message::Output { stream, bytes: bytes.to_vec() });
    }

    /// A sink that drops everything (tests of process handling).
    pub fn discard() -> OutputSink {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || for _ in receiver {});
        OutputSink(sender)
    }

    /// A sink that passes the bytes of both streams to `to` (tests).
    pub fn forwarding(to: Sender<Vec<u8>>) -> OutputSink {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for message in receiver {
                if let Message::Output { bytes, .. } = message {
                    let _ = to.send(bytes);
                }
            }
        });
        OutputSink(sender)
    }
}

fn render(options: Options, receiver: Receiver<Message>) {
    let mut terminal = terminal::Terminal::new(options);
    let mut json = json::Json::default();
    for message in receiver {
        match message {
            Message::Event(event) => match options.format {
                Format::Json if in_json(&event, options.verbosity) => json.print(&event),
                Format::Json => {}
                Format::Human => terminal.event(&event),
            },
            Message::Output { stream, bytes } => match options.format {
                // Standard output carries the JSON stream: the program writes to stderr.
                Format::Json => {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(&bytes);
                    let _ = err.flush();
                }
                Format::Human => terminal.output(stream, &bytes),
            },
            Message::Finish => break,
        }
    }
    terminal.finish();
}

// Before a session: direct printing on standard error.

fn color() -> bool {
    static COLOR: OnceLock<bool> = OnceLock::new();
    *COLOR.get_or_init(|| no_color_unset() && std::io::stderr().is_terminal())
}

pub(crate) fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Progress: building, starting.
pub fn info(text: impl AsRef<str>) {
    eprintln!("{} {}", paint(color(), "1;36", "[hot]"), text.as_ref());
}

/// Something the developer should know but that needs no action now.
pub fn warn(text: impl AsRef<str>) {
    eprintln!("{} warning: {}", paint(color(), "1;33", "[hot]"), text.as_ref());
}

/// Something failed; the text says what keeps running and what to do.
pub fn error(text: impl AsRef<str>) {
    eprintln!("{} error: {}", paint(color(), "1;31", "[hot]"), text.as_ref());
}

/// Removes ANSI escape sequences (CSI) from text meant for a pipe or a JSON string.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours_for_pipes() {
        assert_eq!(strip_ansi("\x1b[1m\x1b[91merror\x1b[0m: x"), "error: x");
    }

    #[test]
    fn quiet_keeps_outcomes_and_errors_verbose_adds_repeats_and_commands() {
        let ignored = |again| Event::Ignored { path: "/ws/notes.txt".into(), why: crate::events::Why::EnvFile, again };
        assert!(in_json(&ignored(false), Verbosity::Normal) && !in_json(&ignored(true), Verbosity::Normal));
        assert!(!in_json(&Event::CargoOutput { text: "   Compiling x".into(), status: true }, Verbosity::Verbose));
        let building = Event::BuildStarted { target: "server".into(), without_cargo: vec![] };
        let failed = Event::CompileFailed { boundary: "web".into() };
        assert!(!shown(&building, Verbosity::Quiet) && shown(&building, Verbosity::Normal));
        assert!(shown(&failed, Verbosity::Quiet));
        assert!(shown(&ignored(false), Verbosity::Normal) && !shown(&ignored(true), Verbosity::Normal));
        assert!(shown(&ignored(true), Verbosity::Verbose));
        assert!(!shown(&Event::Command { command: "cargo build".into() }, Verbosity::Normal));
    }
}
