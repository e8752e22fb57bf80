//! `collective algorithm new NAME`: a new algorithm crate that builds and
//! runs at once, from the templates in `templates/algorithm/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const CARGO_TOML: &str = include_str!("../templates/algorithm/Cargo.toml.tmpl");
const CONFIG_TOML: &str = include_str!("../templates/algorithm/config.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/algorithm/lib.rs.tmpl");
const README_MD: &str = include_str!("../templates/algorithm/README.md.tmpl");

/// The guest SDK of the source tree this program was built from, if it is
/// still there.
pub fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    sdk.join("Cargo.toml")
        .exists()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// Checks an algorithm's crate name: lowercase letters, digits and '-',
/// starting with a letter.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "'{name}' is not an algorithm name: use lowercase letters, digits and '-', \
             starting with a letter (my-algorithm)"
        );
    }
    Ok(())
}

/// `my-algo` as a Rust type name: `MyAlgo`.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes the crate for `name` into `dir` (which must not exist), depending
/// on the guest SDK at `sdk`; copies the SDK's workspace lock file so that it
/// builds with the versions the SDK was tested with. Returns the files made.
pub fn create(name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if !sdk.join("Cargo.toml").exists() {
        bail!(
            "{} is not the guest SDK (no Cargo.toml there); give --sdk DIR, the guest-sdk \
             directory of a compute-to-ssi checkout",
            sdk.display()
        );
    }
    if dir.exists() {
        bail!("{} exists; give a new directory", dir.display());
    }
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("finding {}", sdk.display()))?;
    let sdk_text = sdk.to_str().context("the SDK's path is not UTF-8")?;
    let lib = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{lib}}", &lib)
            .replace("{{type}}", &type_name(name))
            // A TOML basic string: backslashes as slashes, quotes escaped.
            .replace("{{sdk}}", &sdk_text.replace('\\', "/").replace('"', "\\\""))
    };
    let mut files = vec![
        (dir.join("Cargo.toml"), fill(CARGO_TOML)),
        (dir.join(".cargo/config.toml"), fill(CONFIG_TOML)),
        (dir.join("src/lib.rs"), fill(LIB_RS)),
        (dir.join("README.md"), fill(README_MD)),
        (dir.join(".gitignore"), "/target\n".to_string()),
    ];
    if let Some(lock) = sdk.parent().map(|p| p.join("Cargo.lock"))
        && let Ok(text) = std::fs::read_to_string(&lock)
    {
        files.push((dir.join("Cargo.lock"), text));
    }
    // Written into a fresh sibling directory first and renamed: a failure
    // leaves nothing, and nothing of the user's is ever removed.
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    for (path, text) in &files {
        let staged = staging
            .path()
            .join(path.strip_prefix(dir).context("inside the directory")?);
        if let Some(parent) = staged.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&staged, text).with_context(|| format!("writing {}", staged.display()))?;
    }
    std::fs::rename(staging.path(), dir).with_context(|| format!("creating {}", dir.display()))?;
    // Renamed away: nothing is left for the guard to remove.
    let _ = staging.keep();
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_typed() {
        for bad in ["", "My", "1x", "a_b", "a-", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("poisson-glm2").expect("a good name");
        assert_eq!(type_name("poisson-glm2"), "PoissonGlm2");
    }

    #[test]
    fn the_crate_is_written_whole_or_not_at_all() {
        let sdk = default_sdk().expect("the SDK of this checkout");
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("my-algo");
        let files = create("my-algo", &target, &sdk).expect("created");
        assert!(files.iter().all(|f| f.exists()));
        // Nothing but the crate is left beside it.
        let beside: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(beside, vec![std::ffi::OsString::from("my-algo")]);
        let lib = std::fs::read_to_string(target.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("pub struct MyAlgo;"));
        assert!(!lib.contains("{{"), "every placeholder filled");
        let manifest = std::fs::read_to_string(target.join("Cargo.toml")).expect("Cargo.toml");
        assert!(manifest.contains("name = \"my-algo\""));
        // Again: refused, and what is there is untouched.
        assert!(create("my-algo", &target, &sdk).is_err());
        assert!(create("my-algo", &dir.path().join("x"), dir.path()).is_err());
        assert!(!dir.path().join("x").exists());
    }
}
