//! The private channel between `cargo hot` (the parent) and the running program (the child).
//!
//! A Unix stream socket carrying one JSON object per line. The child connects and says
//! [`ChildMessage::Hello`]; the parent sends [`ParentMessage::Reload`] with a fresh id for
//! each patch, and the child answers each with [`ChildMessage::Reloaded`] carrying the same
//! id. Both sides use these types, so they cannot drift apart.

use serde_derive::{Deserialize, Serialize};

/// Set only in cargo-hot's own trampoline process (which passes listening sockets on and
/// then execs the program, keeping its PID). The agent must not start there: its connection
/// would die with the exec and be mistaken for the program's.
pub const TRAMPOLINE_ENV: &str = "CARGO_HOT_LISTEN_SOURCE_FDS";

/// Version of this protocol; a child speaking another one is restarted rather than patched.
pub const PROTOCOL_VERSION: u32 = 2;

/// The runtime's anchor: a symbol whose address the child reports in [`ChildMessage::Hello`],
/// so that cargo hot can turn addresses in the host binary's symbol table into addresses in
/// the running process (the load bias of a position-independent executable).
pub const ANCHOR_SYMBOL: &str = "__hot_runtime_anchor";

/// Messages from cargo hot to the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParentMessage {
    /// Load the shared object at `patch` and point each listed export at its new code.
    /// `exports` are the keys after the `__hot_entry_` prefix (module path, name, signature hash).
    /// `redirects`: old copies of changed functions that must jump to the patch's new code.
    Reload {
        id: u64,
        patch: String,
        exports: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        redirects: Vec<Redirect>,
    },
    /// Stop accepting on the sockets cargo hot passed down (LISTEN_FDS) and on those it handed
    /// to the program's own `bind` (`sockets`: their device and inode), before a stop: the
    /// connections already accepted finish, new ones wait in the kernel for the next program.
    Drain {
        id: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sockets: Vec<(u64, u64)>,
    },
}

/// One running function to send to the patch's new copy: the first bytes of the old copy at
/// `from` (an address in this process) become a jump to the patch's load bias plus `to`.
/// `room` is how many bytes at `from` belong to that function (its size up to the next
/// symbol), which the jump must fit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub from: u64,
    pub to: u64,
    pub room: u64,
}

/// Messages from the program to cargo hot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChildMessage {
    /// Sent once, right after connecting.
    Hello {
        pid: u32,
        protocol: u32,
        /// Address of [`ANCHOR_SYMBOL`] in this process.
        #[serde(default)]
        anchor: u64,
        /// Offset from the thread pointer to the executable's own thread-local block (the
        /// same for every thread), when the executable has thread-locals and the runtime
        /// knows how to read the thread pointer on this architecture.
        #[serde(default)]
        tls_offset: Option<i64>,
        /// The executable's load bias (run-time minus link-time addresses). The anchor tells
        /// it only when the runtime is linked into the executable; cargo hot links the
        /// dependencies, the runtime among them, into a library of their own.
        #[serde(default)]
        executable_bias: Option<u64>,
    },
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
        /// How many running functions now jump to the new code.
        #[serde(default)]
        redirected: usize,
        /// Where the patch was loaded (its load bias), so that the statics it introduced can
        /// be found by later patches.
        #[serde(default)]
        base: u64,
        /// What was built again by the new code after the switch, in registration order.
        #[serde(default)]
        rebuilt: Vec<Rebuilt>,
    },
    Error { message: String },
}

/// One value, router, scope or hook rebuilt after a patch (see `hot::Hot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rebuilt {
    /// `router`, `value`, `scope` or `hook`.
    pub kind: String,
    /// Where the app created it (`src/main.rs:31`), or the name it was given.
    pub name: String,
    pub micros: u64,
    /// Set when it could not be rebuilt (the build panicked or returned an error): the
    /// previous version keeps serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when it was rebuilt but something needs the developer's attention (an old job
    /// that did not stop in time, a cleanup that panicked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Serialises one message as a single line (newline included).
pub fn encode<T: serde::Serialize>(message: &T) -> String {
    let mut line = serde_json::to_string(message).expect("protocol messages always serialise");
    line.push('\n');
    line
}

/// Parses one line received from the other side.
pub fn decode<'a, T: serde::Deserialize<'a>>(line: &'a str) -> Result<T, serde_json::Error> {
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
            redirects: vec![Redirect { from: 0x5555_0000_1000, to: 0x2340, room: 64 }],
        };
        let line = encode(&message);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one message, one line: {line}");
        assert_eq!(decode::<ParentMessage>(&line).unwrap(), message);
    }

    #[test]
    fn reloaded_carries_id_and_outcome() {
        let rebuilt = vec![Rebuilt {
            kind: "router".into(),
            name: "src/main.rs:31".into(),
            micros: 90,
            error: Some("panicked: no such route".into()),
            warning: None,
        }];
        let ok = ChildMessage::Reloaded { id: 3, outcome: ReloadOutcome::Ok { load_micros: 812, switched: 4, redirected: 2, base: 0x7f00, rebuilt } };
        let line = encode(&ok);
        assert!(line.contains("\"status\":\"ok\""), "{line}");
        assert_eq!(decode::<ChildMessage>(&line).unwrap(), ok);
        let err = ChildMessage::Reloaded { id: 4, outcome: ReloadOutcome::Error { message: "undefined symbol: x".into() } };
        assert_eq!(decode::<ChildMessage>(&encode(&err)).unwrap(), err);
    }

    #[test]
    fn a_hello_from_an_older_runtime_still_parses() {
        let hello: ChildMessage = decode(r#"{"type":"hello","pid":7,"protocol":1}"#).unwrap();
        assert_eq!(hello, ChildMessage::Hello { pid: 7, protocol: 1, anchor: 0, tls_offset: None, executable_bias: None });
    }

    #[test]
    fn drain_round_trips() {
        assert_eq!(decode::<ParentMessage>(&encode(&ParentMessage::Drain { id: 9, sockets: vec![] })).unwrap(), ParentMessage::Drain { id: 9, sockets: vec![] });
        let held = ParentMessage::Drain { id: 9, sockets: vec![(64768, 123456)] };
        assert_eq!(decode::<ParentMessage>(&encode(&held)).unwrap(), held);
        assert_eq!(decode::<ParentMessage>(r#"{"type":"drain","id":3}"#).unwrap(), ParentMessage::Drain { id: 3, sockets: vec![] });
        let drained = ChildMessage::Drained { id: 9, descriptors: 2 };
        assert_eq!(decode::<ChildMessage>(&encode(&drained)).unwrap(), drained);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<ChildMessage>("{\"type\":\"nope\"}").is_err());
        assert!(decode::<ParentMessage>("not json").is_err());
    }
}
