//! `--message-format json`: each event as one JSON object on its own line of standard output,
//! `{"kind": ..., <the event's fields>, "message": <what the terminal would print>}`. The
//! schema is in the README.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::words;
use crate::events::Event;

/// The JSON renderer: remembers the workspace root for the `message` texts.
#[derive(Default)]
pub struct Json {
    root: Option<PathBuf>,
}

impl Json {
    pub fn print(&mut self, event: &Event) {
        if let Event::SessionStarted { workspace, .. } = event {
            self.root = Some(workspace.clone());
        }
        let mut line = object(event, self.root.as_deref()).to_string();
        line.push('\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// The JSON object of an event: its fields, colours stripped from compiler text, and
/// `message`, what the terminal would print.
pub fn object(event: &Event, root: Option<&Path>) -> serde_json::Value {
    let mut value = serde_json::to_value(event).expect("events serialise");
    let message: Vec<String> = words::lines(event, root).into_iter().map(|line| super::strip_ansi(&line.text)).collect();
    if let Some(object) = value.as_object_mut() {
        for key in ["rendered", "text"] {
            if let Some(serde_json::Value::String(text)) = object.get_mut(key) {
                *text = super::strip_ansi(text);
            }
        }
        if !message.is_empty() {
            object.insert("message".into(), message.join("\n").trim_end().into());
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ChangeAction, RestartCause, Why};

    #[test]
    fn every_event_is_one_object_with_its_kind_fields_and_words() {
        let change = Event::Change {
            paths: vec!["/ws/crates/shared/src/lib.rs".into()],
            action: ChangeAction::Restart { path: "/ws/crates/shared/src/lib.rs".into(), why: Why::OtherCrate { package: "shared".into() } },
        };
        let object = object(&change, Some(Path::new("/ws")));
        assert_eq!(object["kind"], "change");
        assert_eq!(object["action"]["action"], "restart");
        assert_eq!(object["action"]["why"]["why"], "other-crate");
        assert_eq!(object["action"]["why"]["package"], "shared");
        assert_eq!(object["message"], "crates/shared/src/lib.rs changed → restart (compiled by `shared`, outside the boundary)");
        assert_eq!(object["paths"][0], "/ws/crates/shared/src/lib.rs", "paths stay absolute");
        let restarted = super::object(&Event::Restarted { pid: 9, previous_pid: 8, build_ms: 1120, cause: RestartCause::Rebuilt }, None);
        assert_eq!((restarted["kind"].as_str(), restarted["pid"].as_u64(), restarted["build_ms"].as_u64()), (Some("restarted"), Some(9), Some(1120)));
        assert!(!object.to_string().contains('\n'), "one line");
    }
}
