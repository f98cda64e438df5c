fn main() -> std::process::ExitCode {
    cargo_hot::main_entry()
}
