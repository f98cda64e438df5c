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

/// Built and dropped inside each request: its layout may change freely (a DTO).
struct Order {
    id: u32,
}

#[hot::export]
pub fn order() -> String {
    let order = Order { id: 7 };
    format!("order id={}", order.id)
}

/// Sized by a const of a module that defines no types, and kept in a static across requests.
mod sizes {
    pub const SLOTS: usize = 2;
}

struct Ring {
    slots: [u64; sizes::SLOTS],
    sentinel: u64,
}

static RING: std::sync::Mutex<Option<Ring>> = std::sync::Mutex::new(None);

#[hot::export]
pub fn ring() -> String {
    let mut ring = RING.lock().unwrap();
    let ring = ring.get_or_insert_with(|| Ring { slots: [1; sizes::SLOTS], sentinel: 42 });
    format!("ring slots={} sentinel={}", ring.slots.len(), ring.sentinel)
}

/// An alias a static's type uses. Re-pointed to `u64`, the struct keeps its size, but rustc
/// orders its fields anew: only the compiled layout shows it.
pub type Count = u16;

struct Tally {
    hits: Count,
    sentinel: u64,
}

static TALLY: std::sync::Mutex<Tally> = std::sync::Mutex::new(Tally { hits: 0, sentinel: 42 });

#[hot::export]
pub fn tally() -> String {
    let mut tally = TALLY.lock().unwrap();
    tally.hits += 1;
    format!("tally hits={} bytes={} sentinel={}", tally.hits, std::mem::size_of::<Count>(), tally.sentinel)
}

/// The host keeps the token behind `dyn Any`; the new code downcasts it.
#[hot::export]
pub fn make_token() -> Box<dyn std::any::Any + Send + Sync> {
    Box::new(Token { id: 5, sentinel: 42 })
}

struct Token {
    id: u8,
    sentinel: u64,
}

#[hot::export]
pub fn read_token(token: &(dyn std::any::Any + Send + Sync)) -> String {
    match token.downcast_ref::<Token>() {
        Some(token) => format!("token id={} sentinel={}", token.id, token.sentinel),
        None => "token of another type".to_string(),
    }
}

/// A static a macro declares: the source check cannot see it, so a patch gets its own copy.
macro_rules! counter {
    ($name:ident) => {
        static $name: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    };
}
counter!(MACRO_HITS);

#[hot::export]
pub fn macro_hits() -> String {
    format!("macro hits={}", MACRO_HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
}
