//! A redirect of running functions: where the running program keeps each copy of a
//! boundary function (the host binary's, then each applied patch's), and the jumps that send
//! them all to a new patch's copy. The jumps are written by the program itself (see `hot`'s
//! loader), which parks its other threads meanwhile; here is only the planning: which
//! addresses, whether each old copy has room for a jump, and whether a name is ambiguous.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use hot::protocol::Redirect;

use crate::abi::elf::{self, FunctionCode};
use crate::patch::reach::{readable, Stale, Unreached};

/// Bytes of the jump the runtime writes (`jmp *0(%rip)` and an address).
pub const JUMP_LEN: u64 = 14;

/// The running copies of a boundary's functions.
#[derive(Debug, Clone, Default)]
pub struct RunningCopies {
    /// In the host binary, at link-time addresses (the program adds its load bias).
    host: HashMap<String, Vec<FunctionCode>>,
    /// In applied patches, at run-time addresses.
    patches: HashMap<String, Vec<FunctionCode>>,
    /// The copy the newest patch that carried the function has (run-time address).
    newest: HashMap<String, u64>,
}

impl RunningCopies {
    /// The host binary's copies of `names`.
    pub fn of_host(executable: &Path, names: &HashSet<String>) -> Result<Self> {
        Ok(RunningCopies { host: elf::function_code(executable, &|name| names.contains(name))?, patches: HashMap::new(), newest: HashMap::new() })
    }

    /// Records the functions of a patch the program loaded at `base`; those it `carried` (the
    /// others jump to an older copy: see `thin`) are the newest copies from now on.
    pub fn add_patch(&mut self, patch: &Path, base: u64, carried: &HashSet<String>) -> Result<()> {
        for (name, copies) in elf::function_code(patch, &|_| true)? {
            let copies: Vec<FunctionCode> = copies.into_iter().map(|c| FunctionCode { address: base.wrapping_add(c.address), room: c.room }).collect();
            if let (true, Some(first)) = (carried.contains(&name) && base != 0, copies.first()) {
                self.newest.insert(name.clone(), first.address);
            }
            self.patches.entry(name).or_default().extend(copies);
        }
        Ok(())
    }

    /// Where the running program has the newest copy of `name` (a run-time address): the one
    /// the newest patch that carried it has, else the host binary's, whose load bias is `bias`.
    pub fn running_address(&self, name: &str, bias: Option<u64>) -> Option<u64> {
        if let Some(address) = self.newest.get(name) {
            return Some(*address);
        }
        let copy = self.host.get(name)?.first()?;
        Some(copy.address.wrapping_add(bias?))
    }

    /// Whether every running copy of `name` can take a jump: Err(why) when one cannot.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let host = self.host.get(name).map(Vec::as_slice).unwrap_or_default();
        if host.len() > 1 {
            return Err(format!("the running program has {} functions of that name", host.len()));
        }
        let copies = host.iter().chain(self.patches.get(name).into_iter().flatten());
        match copies.map(|c| c.room).min() {
            Some(room) if room < JUMP_LEN => Err(format!("its running code is {room} bytes long, too short for a jump")),
            _ => Ok(()),
        }
    }

    /// The jumps that send every running copy of `names` to their copies in `patch` (a
    /// shared object linked at address 0, so its addresses are offsets from where it loads).
    /// `bias` is the executable's load bias in the running program. Err names the function
    /// that cannot be redirected, and why.
    pub fn plan(&self, names: &[String], patch: &Path, bias: Option<u64>) -> Result<Vec<Redirect>, Stale> {
        let stale = |name: &str, why: String| Stale { function: readable(name), why: Unreached::NotRedirectable { why } };
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        let new = elf::function_code(patch, &|name| wanted.contains(name)).map_err(|err| stale(&names[0], format!("{err:#}")))?;
        let mut redirects = Vec::new();
        for name in names {
            let to = match new.get(name).map(Vec::as_slice) {
                Some([one]) => one.address,
                Some(_) => return Err(stale(name, "the patch has several functions of that name".to_string())),
                None => return Err(stale(name, "the patch lacks it".to_string())),
            };
            for copy in self.host.get(name).into_iter().flatten() {
                let bias = bias.ok_or_else(|| stale(name, "the running program's load address is unknown".to_string()))?;
                redirects.push(Redirect { from: copy.address.wrapping_add(bias), to, room: copy.room });
            }
            for copy in self.patches.get(name).into_iter().flatten() {
                redirects.push(Redirect { from: copy.address, to, room: copy.room });
            }
        }
        Ok(redirects)
    }
}
