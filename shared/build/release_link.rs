//! Build script shared by every function crate (`build = "../../shared/build/release_link.rs"`).
//!
//! With `panic = "abort"` (the release profile) nothing in a function ever unwinds, so its
//! unwind tables (`.eh_frame`, `.eh_frame_hdr`: about 0.5 MB of every binary, 0.16 MB zipped)
//! are read by nobody. x86_64 Linux emits them even with `-C force-unwind-tables=no`, and the
//! prebuilt standard library carries its own, so the linker drops them: the script below
//! discards both sections (GNU ld and lld, the linker `cargo lambda`/`sam build` use through
//! zig, read it the same way), and `--no-eh-frame-hdr` stops the linker building an index of a
//! section that is gone. Only the functions' binaries get it (`rustc-link-arg-bins`), only in a
//! release build, and only while the release profile aborts on panic: Cargo does not tell a
//! build script the panic strategy (`CARGO_CFG_PANIC` is the target's default, `unwind`), so
//! this reads it where Cargo does, `CARGO_PROFILE_RELEASE_PANIC` or else the workspace
//! manifest's `[profile.release]`. A binary that unwinds and has no tables aborts on its first
//! panic instead of catching it; tests and debug builds unwind and keep their tables, and the
//! functions' `[[bin]]`s have `test = false`, so no test harness is built from them. Two edges
//! this cannot see, neither used here: `--config profile.release.panic=...` on the command line,
//! and `cargo test --release`, which builds a package's bins for its integration tests with
//! `panic = "unwind"` under the release profile (those bins would abort on a panic).
//! BENCHMARKS.md ("Unwind tables") has the measurements and what is given up (a panic's
//! backtrace, which `RUST_BACKTRACE` would print and Lambda never sets).

#![allow(clippy::expect_used, reason = "a build script fails by panicking: Cargo prints the message")]

use std::{env, fs, path::PathBuf};

const DISCARD_UNWIND_TABLES: &str = "\
SECTIONS
{
  /DISCARD/ : { *(.eh_frame) *(.eh_frame_hdr) }
}
INSERT AFTER .text;
";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace_manifest = manifest.join("../../Cargo.toml");
    println!("cargo::rerun-if-changed=../../shared/build/release_link.rs");
    println!("cargo::rerun-if-changed={}", workspace_manifest.display());
    println!("cargo::rerun-if-env-changed=CARGO_PROFILE_RELEASE_PANIC");
    let release = env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if !(release && linux && release_aborts(&workspace_manifest)) {
        return;
    }
    let script = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("discard-unwind-tables.ld");
    fs::write(&script, DISCARD_UNWIND_TABLES).expect("writing the linker script to OUT_DIR");
    println!("cargo::rustc-link-arg-bins=-Wl,-T,{}", script.display());
    println!("cargo::rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
}

/// Whether the release profile's panic strategy is `abort`: the environment's override, else the
/// `panic` key of the workspace manifest's `[profile.release]` table (read line by line: the
/// manifest writes it as `panic = "abort"`, and anything else reads as "unwinds").
fn release_aborts(workspace_manifest: &std::path::Path) -> bool {
    if let Ok(strategy) = env::var("CARGO_PROFILE_RELEASE_PANIC") {
        return strategy == "abort";
    }
    let Ok(text) = fs::read_to_string(workspace_manifest) else { return false };
    let mut in_release = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_release = line == "[profile.release]";
        } else if in_release
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "panic"
        {
            return value.split('#').next().unwrap_or("").trim() == "\"abort\"";
        }
    }
    false
}
