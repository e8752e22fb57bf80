//! The import allow-list: which WASI interfaces a component may import.
//!
//! A plain Rust `wasm32-wasip2` component needs WASI's I/O plumbing even when
//! it never does I/O: streams for stdout and stderr (panic messages), `exit`,
//! an (empty) environment and arguments, a (closed) stdin, and the terminal
//! queries. That is all the sandbox links and all it allows. No clocks, no
//! randomness (algorithms get a seed), and never sockets, HTTP or the
//! filesystem. Anything else is refused by name before instantiation.
//!
//! A component also imports the contract's own `c2ssi:algorithm/types`
//! interface: it holds only type definitions, and the host links it as an
//! empty instance, so a function smuggled into it fails to link.

/// The allowed interfaces, without version.
pub const ALLOWED_INTERFACES: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// The contract's types-only interface, without version.
pub const CONTRACT_TYPES: &str = "c2ssi:algorithm/types";

/// The version of the contract this host runs (`wit/algorithm.wit`).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// Versions of the contract that components were built against and that
/// this host refuses by name rather than as an unknown import.
pub const RETIRED_CONTRACT_VERSIONS: &[&str] = &["0.1."];

/// The allow-list in words, for error messages.
pub const ALLOWED_DESCRIPTION: &str = "wasi:io/{error,poll,streams} and wasi:cli/{environment,exit,\
stdin,stdout,stderr,terminal-*} at version 0.2.x, and the types of c2ssi:algorithm@0.2.x";

/// Whether one import name (`wasi:io/streams@0.2.6`) is allowed.
pub fn is_allowed(import: &str) -> bool {
    let (interface, version) = match import.split_once('@') {
        Some((i, v)) => (i, Some(v)),
        None => (import, None),
    };
    let Some(version) = version else {
        return false;
    };
    (ALLOWED_INTERFACES.contains(&interface) && version.starts_with("0.2."))
        || (interface == CONTRACT_TYPES && version.starts_with("0.2."))
}

/// The retired contract version that `imports` name, if any
/// (`c2ssi:algorithm/types@0.1.0` gives `0.1.0`).
pub fn retired_contract<'a>(imports: impl IntoIterator<Item = &'a str>) -> Option<String> {
    imports.into_iter().find_map(|import| {
        let (interface, version) = import.split_once('@')?;
        (interface == CONTRACT_TYPES
            && RETIRED_CONTRACT_VERSIONS
                .iter()
                .any(|v| version.starts_with(v)))
        .then(|| version.to_string())
    })
}

/// The imports in `imports` that are not allowed, in order.
pub fn forbidden<'a>(imports: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    imports
        .into_iter()
        .filter(|i| !is_allowed(i))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_and_cli_plumbing_are_allowed() {
        assert!(is_allowed("wasi:io/streams@0.2.6"));
        assert!(is_allowed("wasi:cli/stderr@0.2.0"));
        assert!(is_allowed("c2ssi:algorithm/types@0.2.0"));
    }

    #[test]
    fn a_retired_contract_is_named() {
        assert_eq!(
            retired_contract(["wasi:io/error@0.2.0", "c2ssi:algorithm/types@0.1.0"]).as_deref(),
            Some("0.1.0")
        );
        assert_eq!(retired_contract(["c2ssi:algorithm/types@0.2.0"]), None);
        assert!(!is_allowed("c2ssi:algorithm/types@0.1.0"));
    }

    #[test]
    fn capabilities_and_other_versions_are_refused() {
        for import in [
            "wasi:sockets/tcp@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:io/streams@0.3.0",
            "wasi:io/streams",
            "evil:io/streams@0.2.6",
            "c2ssi:algorithm/types@0.1.0",
            "c2ssi:algorithm/types@0.3.0",
            "my-host-function",
        ] {
            assert!(!is_allowed(import), "{import}");
        }
    }

    #[test]
    fn forbidden_keeps_order() {
        assert_eq!(
            forbidden(["wasi:io/error@0.2.0", "wasi:sockets/udp@0.2.0", "x"]),
            ["wasi:sockets/udp@0.2.0", "x"]
        );
    }
}
