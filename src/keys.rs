//! The keys cargo hot answers on a terminal, as bacon and vite offer them: `r` rebuild and
//! restart now, `c` clear the screen, `q` quit. Standard input is switched to single keys
//! without echo while the session runs (restored when the returned guard is dropped); Ctrl-C
//! still signals.

use std::io::{IsTerminal, Read};
use std::sync::mpsc::Sender;

use crate::sys::KeyMode;
use crate::wake::{Key, Wake};

/// Starts reading keys if standard input is a terminal; None otherwise (then the program
/// keeps cargo hot's standard input).
pub fn start(wake: Sender<Wake>) -> Option<KeyMode> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let mode = KeyMode::enter()?;
    std::thread::Builder::new()
        .name("keys".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut byte = [0u8; 1];
            while let Ok(1) = stdin.read(&mut byte) {
                if let Some(key) = key(byte[0]) {
                    if wake.send(Wake::Key(key)).is_err() {
                        break;
                    }
                }
            }
        })
        .ok()?;
    Some(mode)
}

fn key(byte: u8) -> Option<Key> {
    match byte.to_ascii_lowercase() {
        b'r' => Some(Key::Restart),
        b'c' => Some(Key::Clear),
        b'q' => Some(Key::Quit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_either_case() {
        assert_eq!(key(b'r'), Some(Key::Restart));
        assert_eq!(key(b'Q'), Some(Key::Quit));
        assert_eq!(key(b'c'), Some(Key::Clear));
        assert_eq!(key(b'x'), None);
    }
}
