//! What cargo hot tells the developer: one line per event, prefixed with `[hot]` and
//! coloured when stderr is a terminal. The program's own output is never touched.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

fn color() -> bool {
    static COLOR: OnceLock<bool> = OnceLock::new();
    *COLOR.get_or_init(|| std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal())
}

fn paint(code: &str, text: &str) -> String {
    if color() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn line(code: &str, text: &str) {
    eprintln!("{} {}", paint(code, "[hot]"), text);
}

/// Progress: building, starting.
pub fn info(text: impl AsRef<str>) {
    line("1;36", text.as_ref());
}

/// A patch applied, a restart done.
pub fn success(text: impl AsRef<str>) {
    line("1;32", text.as_ref());
}

/// Something the developer should know but that needs no action now.
pub fn warn(text: impl AsRef<str>) {
    line("1;33", &format!("warning: {}", text.as_ref()));
}

/// Something failed; the text says what keeps running and what to do.
pub fn error(text: impl AsRef<str>) {
    line("1;31", &format!("error: {}", text.as_ref()));
}

/// Compiler diagnostics as rustc rendered them (with colours), printed as cargo would:
/// coloured on a terminal, plain otherwise.
pub fn diagnostics(rendered: &str) {
    if color() {
        eprint!("{rendered}");
    } else {
        eprint!("{}", strip_ansi(rendered));
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI sequences: ESC [ parameters final-byte.
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

/// Compact milliseconds: `142 ms`, `1.24 s`.
pub fn ms(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if millis >= 1000.0 {
        format!("{:.2} s", millis / 1000.0)
    } else {
        format!("{millis:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours_for_pipes() {
        assert_eq!(strip_ansi("\x1b[1m\x1b[91merror\x1b[0m: x"), "error: x");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ms(Duration::from_micros(141_600)), "142 ms");
        assert_eq!(ms(Duration::from_millis(1240)), "1.24 s");
    }
}
