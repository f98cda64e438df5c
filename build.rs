//! Builds the bind shim (`src/held_ports/bind_shim.c`), the small library that cargo hot
//! preloads into the program so that a server binding its own port gets the socket cargo hot
//! holds (see `src/held_ports.rs`). It is embedded in cargo-hot and written out at run time.
//!
//! Without a C compiler (or off Linux) cargo-hot is built without it and says, when a session
//! starts, that restarts cannot hold the program's ports.

use std::path::PathBuf;

fn main() {
    let source = "src/held_ports/bind_shim.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rustc-check-cfg=cfg(hot_bind_shim)");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("libhot_bind.so");
    let compiler = cc::Build::new().cargo_metadata(false).cargo_warnings(false).opt_level(2).pic(true).get_compiler();
    let mut command = compiler.to_command();
    command.args(["-shared", "-fPIC", "-Wall", "-o"]).arg(&out).arg(source).arg("-ldl");
    match command.output() {
        Ok(output) if output.status.success() => println!("cargo:rustc-cfg=hot_bind_shim"),
        Ok(output) => println!(
            "cargo:warning=the bind shim was not built, restarts will not hold ports the program binds itself: {}",
            String::from_utf8_lossy(&output.stderr).lines().next().unwrap_or("the C compiler failed")
        ),
        Err(err) => println!("cargo:warning=the bind shim was not built (no C compiler: {err}); restarts will not hold ports the program binds itself"),
    }
}
