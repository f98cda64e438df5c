//! Settings the app reads once at start-up: a patch would change nothing that is already
//! running, so edits here restart instead.

hot::decline!();

pub fn banner() -> &'static str {
    "settings v1"
}
