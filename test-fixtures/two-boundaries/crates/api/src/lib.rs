#[hot::export]
pub fn hello() -> String {
    "api v1".to_string()
}

/// Called directly (not exported) by the `jobs` boundary.
pub fn helper() -> &'static str {
    "helper v1"
}
