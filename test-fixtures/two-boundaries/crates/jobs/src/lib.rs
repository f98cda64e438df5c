#[hot::export]
pub fn run() -> String {
    format!("jobs v1 + {}", api::helper())
}
