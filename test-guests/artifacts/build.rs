//! Compiles the algorithms, the hostile test guests and the privacy attacks
//! to components and writes their paths, and the `foreach_hostile!` and
//! `foreach_attack!` macros, into OUT_DIR.

use std::path::Path;

use guest_build::GuestBuild;

const ALGORITHMS: &[&str] = &[
    "linear-regression",
    "logistic-regression",
    "softmax-regression",
    "elm-ridge",
    "least-squares",
    "logistic-newton",
    "softmax-newton",
];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let workspace = Path::new(&manifest).join("../..");
    guest_build::rerun_if_guest_sources_change(&workspace);

    let mut build = GuestBuild::new().examples_of("test-guests");
    for a in ALGORITHMS {
        build = build.package(a);
    }
    let artifacts = build.run(&workspace);
    guest_build::write_path_constants("paths.rs", &artifacts);

    let hostile: Vec<_> = artifacts
        .iter()
        .filter(|a| !ALGORITHMS.contains(&a.name.as_str()) && !a.name.starts_with("attack-"))
        .collect();
    let attacks: Vec<_> = artifacts
        .iter()
        .filter(|a| a.name.starts_with("attack-"))
        .collect();
    let mut src = String::from(
        "/// Invokes `$mac!(name)` once per hostile guest, with its name as an identifier.\n\
         #[macro_export]\nmacro_rules! foreach_hostile {\n    ($mac:ident) => {\n",
    );
    for a in &hostile {
        src.push_str(&format!("        $mac!({});\n", a.ident()));
    }
    src.push_str("    };\n}\n\n/// Every hostile guest: name and component path.\npub const HOSTILE: &[(&str, &str)] = &[\n");
    for a in &hostile {
        src.push_str(&format!("    ({:?}, {}),\n", a.name, a.const_name()));
    }
    src.push_str("];\n\n");
    src.push_str(
        "/// Invokes `$mac!(name)` once per privacy attack, with its name as an identifier.\n\
         #[macro_export]\nmacro_rules! foreach_attack {\n    ($mac:ident) => {\n",
    );
    for a in &attacks {
        src.push_str(&format!("        $mac!({});\n", a.ident()));
    }
    src.push_str("    };\n}\n\n/// Every privacy attack: name and component path.\npub const ATTACKS: &[(&str, &str)] = &[\n");
    for a in &attacks {
        src.push_str(&format!("    ({:?}, {}),\n", a.name, a.const_name()));
    }
    src.push_str("];\n");
    let out = std::env::var("OUT_DIR").expect("set by cargo");
    std::fs::write(Path::new(&out).join("hostile.rs"), src).expect("writing hostile.rs");
}
