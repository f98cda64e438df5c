//! The hot crate. Each item is reached by the host in a different way (see the host).

pub trait Describe: Send + Sync {
    fn describe(&self) -> String;
}

struct Memory {
    items: u32,
}

impl Describe for Memory {
    fn describe(&self) -> String {
        format!("store v1 items={}", scale(self.items))
    }
}

fn scale(items: u32) -> u32 {
    items
}

/// Called once, at start-up: the host keeps the store behind its vtable.
#[hot::export]
pub fn make_store() -> Box<dyn Describe> {
    Box::new(Memory { items: 3 })
}

/// Called on every request through its slot.
#[hot::export]
pub fn answer() -> String {
    format!("answer {}", helper())
}

fn helper() -> &'static str {
    "v1"
}

/// A plain function the host calls directly.
pub fn direct() -> String {
    "direct v1".to_string()
}

/// Generic: the host compiles its own copy for its type.
pub fn generic_label<T: std::fmt::Debug + Default>() -> String {
    format!("generic v1 {:?}", T::default())
}

/// Inline: the host compiles its own copy.
#[inline]
pub fn inline_label() -> String {
    "inline v1".to_string()
}

/// Read by the host directly.
pub static GREETING: &str = "greeting v1";

/// The host drops these: its drop glue calls the `Drop` impl directly.
pub struct Guard;

static LAST_DROP: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

impl Drop for Guard {
    fn drop(&mut self) {
        *LAST_DROP.lock().unwrap() = "dropped v1".to_string();
    }
}

#[hot::export]
pub fn make_guard() -> Guard {
    Guard
}

#[hot::export]
pub fn last_drop() -> String {
    LAST_DROP.lock().unwrap().clone()
}
