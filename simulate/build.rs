//! Compiles the algorithms in `algorithms/` to components and embeds them,
//! so that `collective simulate` runs on a fresh clone with one command.

use std::path::Path;

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
    let workspace = Path::new(&manifest).join("..");
    guest_build::rerun_if_guest_sources_change(&workspace);
    let mut build = guest_build::GuestBuild::new();
    for a in ALGORITHMS {
        build = build.package(a);
    }
    let artifacts = build.run(&workspace);
    let mut src = String::from(
        "/// The algorithms of `algorithms/`, compiled by the build script: name and component.\n\
         pub const EMBEDDED: &[(&str, &[u8])] = &[\n",
    );
    for a in &artifacts {
        src.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            a.name,
            a.path.display().to_string()
        ));
    }
    src.push_str("];\n");
    let out = std::env::var("OUT_DIR").expect("set by cargo");
    std::fs::write(Path::new(&out).join("embedded.rs"), src).expect("writing embedded.rs");
}
