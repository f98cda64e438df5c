//! The host linked in two parts: its dependencies (std and every crate that is not a member of
//! the workspace) once into a shared library, `libhot-deps-<key>.so`, which every later link of
//! the host reuses; and the workspace's own code, linked on every build against it.
//!
//! A patchable host carries every function of every dependency (each rlib is linked with
//! `--whole-archive`, see `linker`), so relinking it all on every restart cost more than the
//! plain `cargo build` it replaces. Measured on test-fixtures/axum-app (one edit of the shared
//! crate, the link replayed by hand): 207 ms whole-archived, 162 ms as cargo links it, 65 ms for
//! the workspace's code against the library (the library itself: 187 ms, once). The program
//! starts as fast (3 ms to its first accept either way).
//!
//! The library is keyed by what goes into it (the dependencies' archives, by path, size and
//! modification time, the allocator shim by content, every other linker argument), so a
//! changed dependency, feature or linker flag links a new one, and a running program's library
//! is never rewritten under it (a new key is a new file).
//!
//! What stays in the executable: the crate's own objects and every workspace crate (whole),
//! rustc's `symbols.o`, and a second copy of `compiler_builtins`, whose symbols are hidden (a
//! shared library does not export them). What moves into the library: the allocator shim
//! (it calls std's hidden `__rdl_alloc`; with a `#[global_allocator]` rustc puts the shim beside
//! `main` instead, and std's default-visibility references to `__rust_alloc` resolve to the
//! executable at load time). Anything the split cannot link (the library, or the executable
//! against it) is linked whole, as before, and the reason is recorded for the session to say.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory where the libraries are kept; set by cargo hot for its builds (unset: the host
/// is linked whole).
pub const DEPS_DIR_ENV: &str = "CARGO_HOT_DEPS_DIR";

/// How many libraries of one host are kept (the newest ones; older ones are removed after a new
/// one is linked).
const KEPT: usize = 3;

/// The two links of a split host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// rustc's arguments for the executable, without the dependencies' archives (the library
    /// goes where [`Split::executable_args`] puts it).
    executable: Vec<String>,
    /// Where the library is inserted into `executable`.
    insert_at: usize,
    /// The arguments that link the library (without `-o`).
    library: Vec<String>,
    /// Names the library: a digest of `library` and of its inputs' identities.
    pub key: String,
}

/// What a workspace crate is, for [`plan`]: an rlib whose unit cargo hot captured.
pub trait Workspace {
    fn is_workspace_rlib(&self, rlib: &Path) -> bool;
}

impl<F: Fn(&Path) -> bool> Workspace for F {
    fn is_workspace_rlib(&self, rlib: &Path) -> bool {
        self(rlib)
    }
}

/// Splits rustc's link arguments of the host (`args`, with `own_objects` the crate's own
/// objects and `shim` the allocator shim among them, if any). Err says why the host is linked
/// whole instead.
pub fn plan(args: &[String], own_objects: &[PathBuf], shim: Option<&Path>, workspace: &dyn Workspace) -> Result<Split, String> {
    if args.iter().any(|a| a == "-static" || a == "-static-pie" || a == "-Wl,-static") {
        return Err("the executable is linked statically".to_string());
    }
    let own: HashSet<&Path> = own_objects.iter().map(PathBuf::as_path).collect();
    let mut executable = Vec::with_capacity(args.len());
    let mut library = vec!["-shared".to_string(), "-Wl,-Bsymbolic".to_string()];
    let mut insert_at = None;
    let mut deps = 0;
    let mut iter = args.iter();
    // The directory rustc links from (its `symbols.o`): paths in it change on every link.
    let scratch = args.iter().find(|a| a.ends_with("/symbols.o")).and_then(|a| Path::new(a).parent()).map(Path::to_path_buf);
    let mut keyed: Vec<String> = Vec::new();
    while let Some(arg) = iter.next() {
        let is_input = !arg.starts_with('-') && (arg.ends_with(".o") || arg.ends_with(".rlib"));
        if is_input && insert_at.is_none() {
            insert_at = Some(executable.len());
        }
        if arg == "-o" {
            let output = iter.next().ok_or("`-o` without a file")?;
            executable.extend([arg.clone(), output.clone()]);
            continue;
        }
        if arg == "-pie" {
            executable.push(arg.clone());
            continue;
        }
        if arg.ends_with(".o") && !arg.starts_with('-') {
            let path = Path::new(arg);
            if Some(path) == shim {
                library.push(arg.clone());
                keyed.push(file_identity(path, true)?);
            } else if own.contains(path) || scratch.as_deref().is_some_and(|dir| path.starts_with(dir)) {
                executable.push(arg.clone());
            } else {
                // An object rustc was given by the user (`-C link-arg=x.o`): both sides.
                executable.push(arg.clone());
                library.push(arg.clone());
                keyed.push(file_identity(path, false)?);
            }
            continue;
        }
        if arg.ends_with(".rlib") && !arg.starts_with('-') {
            let path = Path::new(arg);
            if workspace.is_workspace_rlib(path) {
                executable.push(arg.clone());
            } else {
                deps += 1;
                if is_compiler_builtins(path) {
                    // Hidden symbols: the executable needs its own copy.
                    executable.push(arg.clone());
                }
                library.extend(["-Wl,--whole-archive".to_string(), arg.clone(), "-Wl,--no-whole-archive".to_string()]);
                keyed.push(file_identity(path, false)?);
            }
            continue;
        }
        // Linker flags, libraries and search paths: both links.
        executable.push(arg.clone());
        library.push(arg.clone());
        if !scratch.as_deref().is_some_and(|dir| arg.contains(&*dir.to_string_lossy())) {
            keyed.push(arg.clone());
        }
    }
    if deps == 0 {
        return Err("the host has no dependencies to link apart".to_string());
    }
    let insert_at = insert_at.ok_or("the link has no object files")?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    keyed.hash(&mut hasher);
    let key = format!("{:016x}", hasher.finish());
    Ok(Split { executable, insert_at, library, key })
}

impl Split {
    /// The library's file name.
    pub fn file_name(&self) -> String {
        format!("libhot-deps-{}.so", self.key)
    }

    /// The arguments that link the library to `output` (a partial file, renamed to
    /// [`Split::file_name`] once linked: the name the executable will ask the loader for).
    pub fn library_args(&self, output: &Path) -> Vec<String> {
        let mut args = self.library.clone();
        args.extend([format!("-Wl,-soname,{}", self.file_name()), "-o".to_string(), output.display().to_string()]);
        args
    }

    /// rustc's arguments for the executable, linked against `library` (found by an absolute
    /// run path, so the program runs from anywhere).
    pub fn executable_args(&self, library: &Path) -> Vec<String> {
        let mut args = self.executable.clone();
        let dir = library.parent().unwrap_or(Path::new("/"));
        args.splice(self.insert_at..self.insert_at, [library.display().to_string(), format!("-Wl,-rpath,{}", dir.display())]);
        args
    }
}

/// The library of `split` in `dir`: linked now with `link` (given its arguments; Err(the
/// linker's complaint)) unless it exists. Err says why the host must be linked whole: this
/// split failed before (recorded beside the libraries, so it is not tried on every build), or
/// fails now.
pub fn ensure(split: &Split, dir: &Path, link: &dyn Fn(&[String]) -> Result<(), String>) -> Result<PathBuf, String> {
    let library = dir.join(split.file_name());
    if library.is_file() {
        touch(&library);
        return Ok(library);
    }
    let failed = failure_marker(dir, &split.key);
    if let Ok(why) = std::fs::read_to_string(&failed) {
        return Err(why);
    }
    std::fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let partial = dir.join(format!(".{}.{}.partial", split.file_name(), std::process::id()));
    if let Err(why) = link(&split.library_args(&partial)) {
        let _ = std::fs::remove_file(&partial);
        remember_failure(dir, &split.key, &format!("linking the dependencies into a library failed: {why}"));
        return Err(std::fs::read_to_string(&failed).unwrap_or(why));
    }
    std::fs::rename(&partial, &library).map_err(|err| format!("cannot create {}: {err}", library.display()))?;
    remove_old_libraries(dir, &library);
    Ok(library)
}

/// Records that `key`'s split cannot link (the executable against its library failed too).
pub fn remember_failure(dir: &Path, key: &str, why: &str) {
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(failure_marker(dir, key), why);
}

fn failure_marker(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("libhot-deps-{key}.failed"))
}

/// `libcompiler_builtins-<hash>.rlib`: intrinsics with hidden visibility.
fn is_compiler_builtins(rlib: &Path) -> bool {
    rlib.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libcompiler_builtins-"))
}

/// What identifies an input of the library: its path and size with its modification time, or
/// (`by_symbols`: the allocator shim, compiled again by every link of the host, its debug info
/// naming the compile) the names it defines and needs.
fn file_identity(path: &Path, by_symbols: bool) -> Result<String, String> {
    if by_symbols {
        use object::{Object, ObjectSymbol};
        let bytes = std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        match object::File::parse(&*bytes) {
            Ok(file) => {
                let mut names: Vec<String> = file
                    .symbols()
                    .filter(|s| s.is_global())
                    .filter_map(|s| Some(format!("{}{}", if s.is_undefined() { "U " } else { "D " }, s.name().ok()?)))
                    .collect();
                names.sort();
                names.hash(&mut hasher);
            }
            // Not an object `object` reads: its bytes, then.
            Err(_) => bytes.hash(&mut hasher),
        }
        return Ok(format!("shim:{:016x}", hasher.finish()));
    }
    let meta = std::fs::metadata(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    Ok(format!("{}:{}:{}.{}", path.display(), meta.len(), meta.mtime(), meta.mtime_nsec()))
}

/// Marks a library as used (the newest are kept).
fn touch(library: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(library) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Removes all but the newest [`KEPT`] libraries and their failure markers. A program still
/// running from a removed one keeps its mapping (the file lives until it is unmapped).
fn remove_old_libraries(dir: &Path, newest: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut libraries: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libhot-deps-")) && p != newest)
        .filter_map(|p| Some((std::fs::metadata(&p).and_then(|m| m.modified()).ok()?, p)))
        .collect();
    libraries.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in libraries.into_iter().skip(KEPT - 1) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_go_to_the_library_and_the_workspace_to_the_executable() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, name).unwrap();
            path.display().to_string()
        };
        let (own, shim, symbols) = (file("server-1.a.rcgu.o"), file("server-1.shim.rcgu.o"), format!("{}/rustcX/symbols.o", dir.path().display()));
        let (web, tokio, builtins) = (file("libweb-2.rlib"), file("libtokio-3.rlib"), file("libcompiler_builtins-4.rlib"));
        let args = strings(&[
            "-m64",
            &symbols,
            &own,
            &shim,
            "-Wl,--as-needed",
            "-Wl,-Bstatic",
            &web,
            &tokio,
            &builtins,
            "-Wl,-Bdynamic",
            "-lc",
            "-L",
            &format!("{}/rustcX/raw-dylibs", dir.path().display()),
            "-o",
            "/t/server-1",
            "-pie",
        ]);
        let workspace = |rlib: &Path| rlib.to_string_lossy().contains("libweb-");
        let split = plan(&args, &[PathBuf::from(&own), PathBuf::from(&shim)], Some(Path::new(&shim)), &workspace).unwrap();
        let exe = split.executable_args(Path::new("/d/libhot-deps-k.so"));
        assert_eq!(
            exe,
            strings(&[
                "-m64",
                "/d/libhot-deps-k.so",
                "-Wl,-rpath,/d",
                &symbols,
                &own,
                "-Wl,--as-needed",
                "-Wl,-Bstatic",
                &web,
                &builtins,
                "-Wl,-Bdynamic",
                "-lc",
                "-L",
                &format!("{}/rustcX/raw-dylibs", dir.path().display()),
                "-o",
                "/t/server-1",
                "-pie",
            ]),
            "the library goes before the first input, where shared objects may be linked"
        );
        let library = split.library_args(Path::new("/d/x.so"));
        assert!(library.starts_with(&strings(&["-shared", "-Wl,-Bsymbolic", "-m64", &shim])), "{library:?}");
        assert!(library.windows(3).any(|w| w == strings(&["-Wl,--whole-archive", &tokio, "-Wl,--no-whole-archive"])));
        assert!(library.windows(3).any(|w| w == strings(&["-Wl,--whole-archive", &builtins, "-Wl,--no-whole-archive"])));
        assert!(!library.contains(&web) && !library.contains(&own) && !library.contains(&symbols) && !library.contains(&"-pie".to_string()));
        assert!(library.ends_with(&strings(&[&format!("-Wl,-soname,libhot-deps-{}.so", split.key), "-o", "/d/x.so"])));

        // Another link of the same program (rustc's scratch directory renamed) has the same key;
        // a changed dependency does not.
        let again: Vec<String> = args.iter().map(|a| a.replace("rustcX", "rustcY")).collect();
        let symbols_again = format!("{}/rustcY/symbols.o", dir.path().display());
        assert!(again.contains(&symbols_again));
        assert_eq!(plan(&again, &[PathBuf::from(&own), PathBuf::from(&shim)], Some(Path::new(&shim)), &workspace).unwrap().key, split.key);
        std::fs::write(&tokio, "a newer tokio").unwrap();
        assert_ne!(plan(&args, &[PathBuf::from(&own)], Some(Path::new(&shim)), &workspace).unwrap().key, split.key);
    }

    #[test]
    fn static_executables_and_hosts_without_dependencies_are_linked_whole() {
        let workspace = |_: &Path| true;
        assert!(plan(&strings(&["-static-pie", "a.o", "-o", "x"]), &[], None, &workspace).unwrap_err().contains("statically"));
        assert!(plan(&strings(&["a.o", "liba-1.rlib", "-o", "x"]), &[PathBuf::from("a.o")], None, &workspace).unwrap_err().contains("no dependencies"));
    }

    #[test]
    fn a_library_is_linked_once_and_a_failure_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let split = Split { executable: vec![], insert_at: 0, library: vec!["-shared".into()], key: "k1".into() };
        let links = std::cell::Cell::new(0);
        let link = |args: &[String]| {
            links.set(links.get() + 1);
            let output = args.iter().skip_while(|a| *a != "-o").nth(1).unwrap();
            std::fs::write(output, "library").map_err(|e| e.to_string())
        };
        let first = ensure(&split, dir.path(), &link).unwrap();
        assert_eq!(ensure(&split, dir.path(), &link).unwrap(), first);
        assert_eq!(links.get(), 1, "the second build reuses the library");

        let broken = Split { key: "k2".into(), ..split.clone() };
        let failing = |_: &[String]| Err("undefined symbol: x".to_string());
        assert!(ensure(&broken, dir.path(), &failing).unwrap_err().contains("undefined symbol: x"));
        assert!(ensure(&broken, dir.path(), &link).unwrap_err().contains("undefined symbol: x"), "not tried again");
    }
}
