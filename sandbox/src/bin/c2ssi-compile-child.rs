//! A binary that is nothing but a compile child: for the sandbox's own tests
//! and benchmarks, which cannot re-run their test harness as one.

fn main() {
    c2ssi_sandbox::compile_child_hook();
    eprintln!(
        "this binary only compiles components for the sandbox: run it as `{} {}`",
        env!("CARGO_BIN_NAME"),
        c2ssi_sandbox::CHILD_ARG
    );
    std::process::exit(2);
}
