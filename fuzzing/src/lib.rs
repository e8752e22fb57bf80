//! What the property-based fuzz tests of every crate share: the test
//! configuration, byte mutations of valid encodings (with the tokens that
//! break a given format), JSON values out of place, and mutations of JSON
//! documents. A dev-dependency only.
#![deny(missing_docs)]

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// The configuration of every fuzz test: proptest's default of 256 cases,
/// raisable with the `PROPTEST_CASES` environment variable (which
/// `Config::default` reads), and no regression files written into the
/// source tree (failures found become plain regression tests instead).
pub fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// Tokens that break JSON parsers more often than random bytes do.
pub const JSON_TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-",
    b"0",
    b"-1",
    b"1e999",
    b"-0.0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"4294967296",
    b"NaN",
    b"\xff",
    b"\xc3",
    b"\0",
    b" ",
];

/// One change to a byte string; positions are taken modulo its length.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit.
    Flip {
        /// The byte.
        at: usize,
        /// The bit in it.
        bit: u8,
    },
    /// Overwrites one byte.
    Set {
        /// The byte.
        at: usize,
        /// Its new value.
        byte: u8,
    },
    /// Cuts the tail off.
    Truncate {
        /// Where.
        at: usize,
    },
    /// Removes a range.
    Delete {
        /// Where it starts.
        at: usize,
        /// How long it is.
        len: usize,
    },
    /// Inserts bytes.
    Insert {
        /// Where.
        at: usize,
        /// What.
        bytes: Vec<u8>,
    },
    /// Inserts one of the format's tokens.
    Token {
        /// Where.
        at: usize,
        /// Which token (modulo their number).
        which: usize,
    },
    /// Copies a range of the input to another place (duplicated fields,
    /// repeated chunks).
    Splice {
        /// Where the range starts.
        from: usize,
        /// How long it is.
        len: usize,
        /// Where it goes.
        to: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        3 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (at, proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (at, any::<usize>()).prop_map(|(at, which)| Mutation::Token { at, which }),
        1 => (at, 1usize..128, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Splice { from, len, to }),
    ]
}

/// One to four mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..=4)
}

/// `input` with `mutations` applied in order, inserting [`JSON_TOKENS`].
pub fn mutate(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    mutate_with(input, mutations, JSON_TOKENS)
}

/// `input` with `mutations` applied in order, inserting `tokens` (those
/// that break the format at hand).
pub fn mutate_with(input: &[u8], mutations: &[Mutation], tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        let len = out.len();
        match m {
            Mutation::Flip { at, bit } if len > 0 => out[at % len] ^= 1 << bit,
            Mutation::Set { at, byte } if len > 0 => out[at % len] = *byte,
            Mutation::Truncate { at } => out.truncate(at % (len + 1)),
            Mutation::Delete { at, len: n } if len > 0 => {
                let start = at % len;
                let end = (start + n).min(len);
                out.drain(start..end);
            }
            Mutation::Insert { at, bytes } => {
                let at = at % (len + 1);
                out.splice(at..at, bytes.iter().copied());
            }
            Mutation::Token { at, which } => {
                let at = at % (len + 1);
                let token = tokens
                    .get(which % tokens.len().max(1))
                    .copied()
                    .unwrap_or(b"");
                out.splice(at..at, token.iter().copied());
            }
            Mutation::Splice { from, len: n, to } if len > 0 => {
                let start = from % len;
                let chunk = out[start..(start + n).min(len)].to_vec();
                let to = to % (len + 1);
                out.splice(to..to, chunk);
            }
            _ => {}
        }
    }
    out
}

/// A JSON value that is likely to be out of place where it lands.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::from(u32::MAX)),
            Just(u64::from(u32::MAX) + 1),
            Just(u64::MAX),
        ]
        .prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |x| x.is_finite())
            .prop_map(Value::from),
        prop_oneof![Just(-0.0f64), Just(1e-300), Just(1e300), Just(0.5)].prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[0-9a-f]{62,66}".prop_map(Value::from),
        "[a-z-]{1,20}".prop_map(Value::from),
        (0usize..5000).prop_map(|n| Value::from("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a JSON document; the node is a pre-order index taken
/// modulo the number of nodes.
#[derive(Debug, Clone)]
pub enum JsonMutation {
    /// The node becomes another value.
    Replace {
        /// The node.
        node: usize,
        /// Its new value.
        with: Value,
    },
    /// A node other than the root goes from its object or array (the
    /// `node % (nodes - 1) + 1`th in pre-order).
    Remove {
        /// The node.
        node: usize,
    },
    /// An object gains a field (an array, an element).
    Add {
        /// The object or array.
        node: usize,
        /// The field's name.
        key: String,
        /// Its value.
        with: Value,
    },
    /// An array's elements are repeated, or an object's field values swapped
    /// around.
    Shuffle {
        /// The array or object.
        node: usize,
        /// How.
        seed: usize,
    },
    /// The node keeps its type and gets an edge value of it (a number
    /// zero, negative, huge or tiny; a string empty, long or edited; an
    /// array emptied), so that decoding succeeds and the checks after it
    /// are reached.
    Tweak {
        /// The node.
        node: usize,
        /// Which edge value.
        seed: usize,
    },
}

/// An edge value of the same type as `value`, picked by `seed`.
fn tweak(value: &Value, seed: usize) -> Value {
    let pick = seed % 12;
    match value {
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            match pick {
                0 => Value::from(0),
                1 => Value::from(1),
                2 => Value::from(-1),
                3 => Value::from(u64::MAX),
                4 => Value::from(u64::from(u32::MAX)),
                5 => Value::from(i64::MIN),
                6 => Value::from(1e300),
                7 => Value::from(-1e-300),
                8 => Value::from(-x),
                9 => Value::from(x * 1e6),
                10 => Value::from(x / 1e6),
                _ => n
                    .as_u64()
                    .map_or_else(|| Value::from(x + 1.0), |u| Value::from(u.wrapping_add(1))),
            }
        }
        Value::String(text) => Value::from(match pick {
            0 => String::new(),
            1 => " ".into(),
            2 => text.repeat(1 + seed % 300),
            3 => text.to_uppercase(),
            4 => format!("{text} "),
            5 => text.chars().rev().collect(),
            6 => text.chars().skip(1).collect(),
            7 => format!("{text}\u{0}"),
            8 => "\u{202e}é😀".into(),
            9 => "0".repeat(64),
            10 => "A".repeat(64),
            _ => format!("{text}{}", seed % 10),
        }),
        Value::Array(a) => match pick % 3 {
            0 => Value::Array(Vec::new()),
            1 => Value::Array(a.iter().chain(a.iter()).cloned().collect()),
            _ => Value::Array(a.iter().skip(1).cloned().collect()),
        },
        other => other.clone(),
    }
}

fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    let node = any::<usize>();
    prop_oneof![
        4 => (node, json_value()).prop_map(|(node, with)| JsonMutation::Replace { node, with }),
        2 => node.prop_map(|node| JsonMutation::Remove { node }),
        1 => (node, "[a-z_]{1,20}", json_value())
            .prop_map(|(node, key, with)| JsonMutation::Add { node, key, with }),
        1 => (node, any::<usize>()).prop_map(|(node, seed)| JsonMutation::Shuffle { node, seed }),
        6 => (node, any::<usize>()).prop_map(|(node, seed)| JsonMutation::Tweak { node, seed }),
    ]
}

/// One to three JSON mutations.
pub fn json_mutations() -> impl Strategy<Value = Vec<JsonMutation>> {
    proptest::collection::vec(json_mutation(), 1..=3)
}

fn count(value: &Value) -> usize {
    1 + match value {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// Calls `f` on the `n`th node in pre-order. Returns how many nodes the
/// subtree has, or `usize::MAX` once the node was found.
fn with_node(value: &mut Value, n: usize, f: &mut dyn FnMut(&mut Value)) -> usize {
    if n == 0 {
        f(value);
        return usize::MAX;
    }
    let mut seen = 1;
    let children: Vec<&mut Value> = match value {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => o.values_mut().collect(),
        _ => Vec::new(),
    };
    for child in children {
        let visited = with_node(child, n - seen, f);
        if visited == usize::MAX {
            return usize::MAX;
        }
        seen += visited;
    }
    seen
}

/// Removes the `n`th node (`n > 0`) from its parent.
fn remove_node(value: &mut Value, n: usize) -> usize {
    let mut seen = 1;
    match value {
        Value::Array(a) => {
            for i in 0..a.len() {
                if n == seen {
                    a.remove(i);
                    return usize::MAX;
                }
                let visited = remove_node(&mut a[i], n - seen);
                if visited == usize::MAX {
                    return usize::MAX;
                }
                seen += visited;
            }
        }
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                if n == seen {
                    o.remove(&k);
                    return usize::MAX;
                }
                let Some(child) = o.get_mut(&k) else {
                    continue;
                };
                let visited = remove_node(child, n - seen);
                if visited == usize::MAX {
                    return usize::MAX;
                }
                seen += visited;
            }
        }
        _ => {}
    }
    seen
}

/// `value` with `mutations` applied in order.
pub fn mutate_json(value: &Value, mutations: &[JsonMutation]) -> Value {
    let mut out = value.clone();
    for m in mutations {
        let nodes = count(&out);
        match m {
            JsonMutation::Replace { node, with } => {
                with_node(&mut out, node % nodes, &mut |v| *v = with.clone());
            }
            JsonMutation::Remove { node } => {
                if nodes > 1 {
                    remove_node(&mut out, 1 + node % (nodes - 1));
                }
            }
            JsonMutation::Add { node, key, with } => {
                with_node(&mut out, node % nodes, &mut |v| match v {
                    Value::Object(o) => {
                        o.insert(key.clone(), with.clone());
                    }
                    Value::Array(a) => a.push(with.clone()),
                    _ => {}
                });
            }
            JsonMutation::Tweak { node, seed } => {
                with_node(&mut out, node % nodes, &mut |v| *v = tweak(v, *seed));
            }
            JsonMutation::Shuffle { node, seed } => {
                with_node(&mut out, node % nodes, &mut |v| match v {
                    Value::Array(a) if !a.is_empty() => {
                        let i = seed % a.len();
                        let copy = a[i].clone();
                        a.push(copy);
                        let by = seed % a.len();
                        a.rotate_left(by);
                    }
                    Value::Object(o) if o.len() > 1 => {
                        let keys: Vec<String> = o.keys().cloned().collect();
                        let a = keys[seed % keys.len()].clone();
                        let b = keys[(seed / keys.len()) % keys.len()].clone();
                        let va = o.get(&a).cloned().unwrap_or(Value::Null);
                        let vb = o.get(&b).cloned().unwrap_or(Value::Null);
                        o.insert(a, vb);
                        o.insert(b, va);
                    }
                    _ => {}
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mutations_reach_every_node() {
        let doc = serde_json::json!({"a": [1, {"b": 2}], "c": "d"});
        assert_eq!(count(&doc), 6);
        for n in 0..6 {
            let replaced = mutate_json(
                &doc,
                &[JsonMutation::Replace {
                    node: n,
                    with: Value::from("X"),
                }],
            );
            assert_ne!(replaced, doc, "node {n}");
        }
        let removed = mutate_json(&doc, &[JsonMutation::Remove { node: 2 }]);
        assert_eq!(removed, serde_json::json!({"a": [1], "c": "d"}));
        let bytes = mutate(
            b"abc",
            &[
                Mutation::Token { at: 1, which: 0 },
                Mutation::Truncate { at: 3 },
            ],
        );
        assert_eq!(bytes, b"a\"b");
    }
}
