//! The private channel between `cargo hot` (the parent) and the running program (the child).
//!
//! A Unix stream socket carrying one JSON object per line. The child connects and says
//! [`ChildMessage::Hello`]; the parent sends [`ParentMessage::Reload`] with a fresh id for
//! each patch, and the child answers each with [`ChildMessage::Reloaded`] carrying the same
//! id. Both sides use these types, so they cannot drift apart.

use serde::{Deserialize, Serialize};

/// Set only in cargo-hot's own trampoline process (which passes listening sockets on and
/// then execs the program, keeping its PID). The agent must not start there: its connection
/// would die with the exec and be mistaken for the program's.
pub const TRAMPOLINE_ENV: &str = "CARGO_HOT_LISTEN_SOURCE_FDS";

/// Version of this protocol; a child speaking another one is restarted rather than patched.
pub const PROTOCOL_VERSION: u32 = 1;

/// Messages from cargo hot to the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParentMessage {
    /// Load the shared object at `patch` and point each listed export at its new code.
    /// `exports` are the keys after the `__hot_entry_` prefix (module path, name, signature hash).
    Reload { id: u64, patch: String, exports: Vec<String> },
    /// Stop accepting on the sockets cargo hot passed down (LISTEN_FDS), before a stop: the
    /// connections already accepted finish, new ones wait in the kernel for the next program.
    Drain { id: u64 },
}

/// Messages from the program to cargo hot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChildMessage {
    /// Sent once, right after connecting.
    Hello { pid: u32, protocol: u32 },
    /// The outcome of the reload with the same `id`. On failure nothing was switched:
    /// the previous code keeps running.
    Reloaded {
        id: u64,
        #[serde(flatten)]
        outcome: ReloadOutcome,
    },
    /// The answer to `Drain`: how many descriptors no longer accept.
    Drained { id: u64, descriptors: usize },
}

/// What happened to one reload request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReloadOutcome {
    Ok {
        /// Microseconds spent in `dlopen`, symbol look-ups and switching the slots.
        load_micros: u64,
        switched: usize,
    },
    Error { message: String },
}

/// Serialises one message as a single line (newline included).
pub fn encode<T: Serialize>(message: &T) -> String {
    let mut line = serde_json::to_string(message).expect("protocol messages always serialise");
    line.push('\n');
    line
}

/// Parses one line received from the other side.
pub fn decode<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, serde_json::Error> {
    serde_json::from_str(line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_round_trips_as_one_line() {
        let message = ParentMessage::Reload {
            id: 7,
            patch: "/tmp/p 1.so".into(),
            exports: vec!["handlers::index::h0123456789abcdef".into()],
        };
        let line = encode(&message);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one message, one line: {line}");
        assert_eq!(decode::<ParentMessage>(&line).unwrap(), message);
    }

    #[test]
    fn reloaded_carries_id_and_outcome() {
        let ok = ChildMessage::Reloaded { id: 3, outcome: ReloadOutcome::Ok { load_micros: 812, switched: 4 } };
        let line = encode(&ok);
        assert!(line.contains("\"status\":\"ok\""), "{line}");
        assert_eq!(decode::<ChildMessage>(&line).unwrap(), ok);
        let err = ChildMessage::Reloaded { id: 4, outcome: ReloadOutcome::Error { message: "undefined symbol: x".into() } };
        assert_eq!(decode::<ChildMessage>(&encode(&err)).unwrap(), err);
    }

    #[test]
    fn drain_round_trips() {
        assert_eq!(decode::<ParentMessage>(&encode(&ParentMessage::Drain { id: 9 })).unwrap(), ParentMessage::Drain { id: 9 });
        let drained = ChildMessage::Drained { id: 9, descriptors: 2 };
        assert_eq!(decode::<ChildMessage>(&encode(&drained)).unwrap(), drained);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<ChildMessage>("{\"type\":\"nope\"}").is_err());
        assert!(decode::<ParentMessage>("not json").is_err());
    }
}
