//! The terminal renderer: one `[hot]` line per outcome, coloured on a terminal; an indicatif
//! progress bar while cargo builds (units done out of the total, the unit being compiled)
//! and a spinner while a patch is built. The program's output and every line are printed
//! with the bar suspended, so nothing tears.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::words::{self, Style};
use super::{paint, shown, strip_ansi, Options, Stream};
use crate::events::Event;

pub struct Terminal {
    options: Options,
    /// The workspace root: paths are shown relative to it.
    root: Option<std::path::PathBuf>,
    /// The build's progress bar or the patch's spinner, while one is shown.
    progress: Option<ProgressBar>,
}

impl Terminal {
    pub fn new(options: Options) -> Self {
        Terminal { options, root: None, progress: None }
    }

    pub fn event(&mut self, event: &Event) {
        if self.options.bars && self.options.verbosity > super::Verbosity::Quiet {
            self.progress_for(event);
        }
        match event {
            Event::SessionStarted { workspace, .. } => self.root = Some(workspace.clone()),
            Event::Cleared => self.write(Stream::Stderr, b"\x1b[2J\x1b[3J\x1b[H"),
            // The bar shows the unit being compiled.
            Event::CargoOutput { status: true, .. } if self.options.bars => return,
            _ => {}
        }
        if !shown(event, self.options.verbosity) {
            return;
        }
        for line in words::lines(event, self.root.as_deref()) {
            let text = match line.style {
                Style::Raw if self.options.color => line.text,
                Style::Raw => strip_ansi(&line.text),
                style => {
                    let code = match style {
                        Style::Info => "1;36",
                        Style::Success => "1;32",
                        Style::Warning => "1;33",
                        Style::Error | Style::Raw => "1;31",
                    };
                    format!("{} {}\n", paint(self.options.color, code, "[hot]"), line.text)
                }
            };
            self.write(Stream::Stderr, text.as_bytes());
        }
    }

    /// Starts, moves and ends the bar and the spinner.
    fn progress_for(&mut self, event: &Event) {
        match event {
            Event::BuildStarted { target, .. } => {
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>7} [{bar:30}] {pos}/{len} {wide_msg}")
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix("build");
                bar.set_message(target.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.replace(Some(bar));
            }
            Event::BuildProgress { done, total, unit } => {
                if let Some(bar) = &self.progress {
                    bar.set_length(*total.max(done) as u64);
                    bar.set_position(*done as u64);
                    if let Some(unit) = unit {
                        bar.set_message(unit.clone());
                    }
                }
            }
            Event::PatchStarted { boundary } => {
                let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                spinner.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"));
                spinner.set_message(format!("patching `{boundary}`…"));
                spinner.enable_steady_tick(Duration::from_millis(80));
                self.replace(Some(spinner));
            }
            Event::BuildFinished { .. }
            | Event::Patched(_)
            | Event::CompileFailed { .. }
            | Event::PatchRejected { .. }
            | Event::Raced { .. }
            | Event::Error { .. }
            | Event::SessionEnded { .. } => self.replace(None),
            _ => {}
        }
    }

    fn replace(&mut self, progress: Option<ProgressBar>) {
        if let Some(old) = self.progress.take() {
            old.finish_and_clear();
        }
        self.progress = progress;
    }

    pub fn output(&mut self, stream: Stream, bytes: &[u8]) {
        self.write(stream, bytes);
    }

    fn write(&self, stream: Stream, bytes: &[u8]) {
        let write = || match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(bytes);
                let _ = err.flush();
            }
        };
        match &self.progress {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    pub fn finish(&mut self) {
        self.replace(None);
    }
}
