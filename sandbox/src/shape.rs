//! The shape check run before a component is compiled: a linear pass with
//! wasmparser that counts what makes compilation expensive (functions, body
//! sizes, locals, branch tables, nesting, segments, types, modules) and
//! refuses a component past any of [`ShapeLimits`], so a compile bomb is
//! named for what it is before the compiler ever sees it.

use wasmparser::{Operator, Parser, Payload};

/// Bounds on a component's shape, checked before compiling. The defaults are
/// ten to a hundred times what the algorithms of this repository have (the
/// largest, elm-ridge: 20 modules and instances, 471 functions, a largest body
/// of 6.2 KiB, 180 KiB of code, 70 locals, a br_table of 14, nesting of 42).
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeLimits {
    /// Core modules, nested components and core instances in all.
    pub max_modules: u64,
    /// Functions defined, in all modules together.
    pub max_functions: u64,
    /// Bytes of one function body.
    pub max_function_bytes: u64,
    /// Bytes of all function bodies together.
    pub max_code_bytes: u64,
    /// Locals of one function.
    pub max_locals: u64,
    /// Targets of one `br_table`.
    pub max_br_table_targets: u64,
    /// Depth of nested blocks, loops and ifs in one function.
    pub max_nesting: u64,
    /// Data segments, in all modules together.
    pub max_data_segments: u64,
    /// Element segments, in all modules together.
    pub max_element_segments: u64,
    /// Type definitions (core and component), in all.
    pub max_types: u64,
}

impl Default for ShapeLimits {
    fn default() -> Self {
        ShapeLimits {
            max_modules: 256,
            max_functions: 20_000,
            max_function_bytes: 512 << 10,
            max_code_bytes: 16 << 20,
            max_locals: 10_000,
            max_br_table_targets: 10_000,
            max_nesting: 512,
            max_data_segments: 10_000,
            max_element_segments: 1_000,
            max_types: 20_000,
        }
    }
}

impl ShapeLimits {
    /// No limits: for measuring a component's shape.
    pub fn unlimited() -> ShapeLimits {
        ShapeLimits {
            max_modules: u64::MAX,
            max_functions: u64::MAX,
            max_function_bytes: u64::MAX,
            max_code_bytes: u64::MAX,
            max_locals: u64::MAX,
            max_br_table_targets: u64::MAX,
            max_nesting: u64::MAX,
            max_data_segments: u64::MAX,
            max_element_segments: u64::MAX,
            max_types: u64::MAX,
        }
    }
}

/// What a component has of each thing the shape check counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Core modules, nested components and core instances.
    pub modules: u64,
    /// Functions defined.
    pub functions: u64,
    /// The largest function body, in bytes.
    pub largest_function_bytes: u64,
    /// All function bodies, in bytes.
    pub code_bytes: u64,
    /// The most locals of one function.
    pub most_locals: u64,
    /// The largest `br_table`, in targets.
    pub largest_br_table: u64,
    /// The deepest nesting of blocks in one function.
    pub deepest_nesting: u64,
    /// Data segments.
    pub data_segments: u64,
    /// Element segments.
    pub element_segments: u64,
    /// Type definitions.
    pub types: u64,
}

/// What the shape check found past a limit: the item, how many, the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the component has {found} {item}; the limit is {limit}")]
pub struct ShapeExceeded {
    /// What was counted, in words ("functions", "bytes in one function body").
    pub item: &'static str,
    /// How many the component has (at least; counting stops at the limit).
    pub found: u64,
    /// The limit.
    pub limit: u64,
}

/// Why the shape check stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShapeError {
    /// Past a limit.
    Exceeded(ShapeExceeded),
    /// Not parseable as WebAssembly.
    Malformed(String),
}

fn over(item: &'static str, found: u64, limit: u64) -> Result<(), ShapeError> {
    if found > limit {
        return Err(ShapeError::Exceeded(ShapeExceeded { item, found, limit }));
    }
    Ok(())
}

fn malformed(e: wasmparser::BinaryReaderError) -> ShapeError {
    ShapeError::Malformed(e.to_string())
}

fn count(n: u32) -> u64 {
    u64::from(n)
}

/// Counts `bytes`' shape and checks it against `limits`, stopping at the
/// first item past its limit.
pub(crate) fn check(bytes: &[u8], limits: &ShapeLimits) -> Result<Shape, ShapeError> {
    let mut shape = Shape::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                shape.modules += 1;
                over(
                    "modules and nested components",
                    shape.modules,
                    limits.max_modules,
                )?;
            }
            Payload::InstanceSection(r) => {
                shape.modules += count(r.count());
                over(
                    "modules and core instances",
                    shape.modules,
                    limits.max_modules,
                )?;
            }
            Payload::TypeSection(r) => {
                shape.types += count(r.count());
                over("type definitions", shape.types, limits.max_types)?;
            }
            Payload::ComponentTypeSection(r) => {
                shape.types += count(r.count());
                over("type definitions", shape.types, limits.max_types)?;
            }
            Payload::FunctionSection(r) => {
                shape.functions += count(r.count());
                over("functions", shape.functions, limits.max_functions)?;
            }
            Payload::CodeSectionStart { count: n, size, .. } => {
                shape.code_bytes += count(size);
                over("bytes of code", shape.code_bytes, limits.max_code_bytes)?;
                // A code section may declare more bodies than functions.
                over("function bodies", count(n), limits.max_functions)?;
            }
            Payload::CodeSectionEntry(body) => check_body(&body, limits, &mut shape)?,
            Payload::DataSection(r) => {
                shape.data_segments += count(r.count());
                over(
                    "data segments",
                    shape.data_segments,
                    limits.max_data_segments,
                )?;
            }
            Payload::ElementSection(r) => {
                shape.element_segments += count(r.count());
                over(
                    "element segments",
                    shape.element_segments,
                    limits.max_element_segments,
                )?;
            }
            _ => {}
        }
    }
    Ok(shape)
}

fn check_body(
    body: &wasmparser::FunctionBody<'_>,
    limits: &ShapeLimits,
    shape: &mut Shape,
) -> Result<(), ShapeError> {
    let size = body.range().len() as u64;
    shape.largest_function_bytes = shape.largest_function_bytes.max(size);
    over(
        "bytes in one function body",
        size,
        limits.max_function_bytes,
    )?;
    let mut locals = 0u64;
    let mut reader = body.get_locals_reader().map_err(malformed)?;
    for _ in 0..reader.get_count() {
        let (n, _) = reader.read().map_err(malformed)?;
        locals += count(n);
        over("locals in one function", locals, limits.max_locals)?;
    }
    shape.most_locals = shape.most_locals.max(locals);
    let mut depth = 0u64;
    let mut operators = body.get_operators_reader().map_err(malformed)?;
    while !operators.eof() {
        match operators.read().map_err(malformed)? {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => {
                depth += 1;
                shape.deepest_nesting = shape.deepest_nesting.max(depth);
                over("levels of nested blocks", depth, limits.max_nesting)?;
            }
            Operator::End => depth = depth.saturating_sub(1),
            Operator::BrTable { targets } => {
                let n = count(targets.len());
                shape.largest_br_table = shape.largest_br_table.max(n);
                over("targets in one br_table", n, limits.max_br_table_targets)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component wrapping one core module of `functions` bodies, each
    /// `body` (the locals declaration and instructions, `end` included).
    fn component(functions: u32, body: &[u8]) -> Vec<u8> {
        use wasm_encoder::{
            CodeSection, Component, FunctionSection, Module, ModuleSection, TypeSection,
        };
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut funcs = FunctionSection::new();
        let mut code = CodeSection::new();
        for _ in 0..functions {
            funcs.function(0);
            code.raw(body);
        }
        let mut module = Module::new();
        module.section(&types).section(&funcs).section(&code);
        let mut component = Component::new();
        component.section(&ModuleSection(&module));
        component.finish()
    }

    #[test]
    fn a_small_component_passes_and_is_counted() {
        let shape = check(&component(3, &[0, 0x0b]), &ShapeLimits::default()).expect("passes");
        assert_eq!(shape.modules, 1);
        assert_eq!(shape.functions, 3);
        assert_eq!(shape.types, 1);
    }

    #[test]
    fn too_many_functions_are_named() {
        let limits = ShapeLimits {
            max_functions: 10,
            ..Default::default()
        };
        let err = check(&component(11, &[0, 0x0b]), &limits).expect_err("refused");
        assert_eq!(
            err,
            ShapeError::Exceeded(ShapeExceeded {
                item: "functions",
                found: 11,
                limit: 10
            })
        );
    }

    #[test]
    fn deep_nesting_and_locals_are_named() {
        let limits = ShapeLimits {
            max_nesting: 3,
            max_locals: 5,
            ..Default::default()
        };
        // block block block block end end end end end
        let mut body = vec![0];
        body.extend([0x02, 0x40].repeat(4));
        body.extend([0x0b].repeat(5));
        let err = check(&component(1, &body), &limits).expect_err("refused");
        assert!(matches!(err, ShapeError::Exceeded(e) if e.item == "levels of nested blocks"));
        // 6 locals of i32
        let err = check(&component(1, &[1, 6, 0x7f, 0x0b]), &limits).expect_err("refused");
        assert!(matches!(err, ShapeError::Exceeded(e) if e.item == "locals in one function"));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert!(matches!(
            check(b"\0asm\x0d\0\x01\0\xff\xff\xff", &ShapeLimits::default()),
            Err(ShapeError::Malformed(_))
        ));
    }
}
