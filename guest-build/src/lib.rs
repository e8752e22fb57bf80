//! Compiles guest crates of this workspace to `wasm32-wasip2` components from a
//! build script, the way wasmtime builds its test programs: a nested `cargo
//! build` in its own target directory (so it never waits on the outer build's
//! lock), with the outer build's compiler wrappers and flags removed (so that
//! `cargo clippy` and `cargo test` share one guest build).
//!
//! Failures panic with the nested cargo's output: a build script has no
//! better way to report them.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target every guest is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// One built component.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The crate or example name, with `-` as in Cargo (`linear-regression`).
    pub name: String,
    /// Where the `.wasm` component is.
    pub path: PathBuf,
}

impl Artifact {
    /// The name as a Rust constant: `LINEAR_REGRESSION`.
    pub fn const_name(&self) -> String {
        self.name.to_uppercase().replace('-', "_")
    }

    /// The name as a Rust identifier: `linear_regression`.
    pub fn ident(&self) -> String {
        self.name.replace('-', "_")
    }
}

/// What to build.
#[derive(Debug, Default)]
pub struct GuestBuild {
    packages: Vec<String>,
    examples_of: Vec<String>,
}

impl GuestBuild {
    /// Nothing yet.
    pub fn new() -> GuestBuild {
        GuestBuild::default()
    }

    /// Builds the library of `package` (a `cdylib`).
    pub fn package(mut self, package: &str) -> GuestBuild {
        self.packages.push(package.to_string());
        self
    }

    /// Builds every example of `package` (each a `cdylib`).
    pub fn examples_of(mut self, package: &str) -> GuestBuild {
        self.examples_of.push(package.to_string());
        self
    }

    /// Runs the build in release mode and returns the components, libraries
    /// first, then examples in name order. `workspace` is the workspace root.
    pub fn run(self, workspace: &Path) -> Vec<Artifact> {
        let out_dir =
            PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
        // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: share one guest
        // target directory per outer profile.
        let target_dir = out_dir
            .ancestors()
            .nth(3)
            .unwrap_or(&out_dir)
            .join("wasm-guests");

        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .arg("build")
            .arg("--release")
            .arg("--target")
            .arg(TARGET)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CLIPPY_ARGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_MAKEFLAGS")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS");
        for p in self.packages.iter().chain(&self.examples_of) {
            cmd.arg("-p").arg(p);
        }
        cmd.arg("--lib");
        if !self.examples_of.is_empty() {
            cmd.arg("--examples");
        }
        let output = cmd
            .output()
            .expect("failed to run cargo for the guest build");
        if !output.status.success() {
            panic!(
                "building the guest components for {TARGET} failed (is the target installed? \
                 `rustup target add {TARGET}`)\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }

        let release = target_dir.join(TARGET).join("release");
        let mut artifacts: Vec<Artifact> = self
            .packages
            .iter()
            .map(|p| Artifact {
                name: p.clone(),
                path: release.join(format!("{}.wasm", p.replace('-', "_"))),
            })
            .collect();
        for p in &self.examples_of {
            let dir = workspace_package_dir(workspace, p).join("examples");
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let path = e.path();
                    (path.extension()? == "rs")
                        .then(|| path.file_stem()?.to_str().map(str::to_string))?
                })
                .collect();
            names.sort();
            artifacts.extend(names.into_iter().map(|n| Artifact {
                path: release.join("examples").join(format!("{n}.wasm")),
                name: n.replace('_', "-"),
            }));
        }
        for a in &artifacts {
            assert!(
                a.path.exists(),
                "expected component at {}",
                a.path.display()
            );
        }
        artifacts
    }
}

fn workspace_package_dir(workspace: &Path, package: &str) -> PathBuf {
    // Packages here live in a folder named after them, at the top or one level down.
    for candidate in [
        workspace.join(package),
        workspace.join("algorithms").join(package),
    ] {
        if candidate.join("Cargo.toml").exists() {
            return candidate;
        }
    }
    panic!(
        "no package folder for {package} under {}",
        workspace.display()
    );
}

/// Tells Cargo to rerun the build script when any guest source changes.
pub fn rerun_if_guest_sources_change(workspace: &Path) {
    for dir in [
        "wit",
        "guest-sdk",
        "algorithms",
        "test-guests",
        "Cargo.lock",
        ".cargo",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
}

/// Writes `pub const NAME: &str = "path";` for each artifact into `file` in OUT_DIR.
pub fn write_path_constants(file: &str, artifacts: &[Artifact]) -> PathBuf {
    let out_dir =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    let mut src = String::new();
    for a in artifacts {
        src.push_str(&format!(
            "/// The `{}` component.\npub const {}: &str = {:?};\n",
            a.name,
            a.const_name(),
            a.path.display().to_string()
        ));
    }
    let path = out_dir.join(file);
    std::fs::write(&path, src).expect("writing generated constants");
    path
}
