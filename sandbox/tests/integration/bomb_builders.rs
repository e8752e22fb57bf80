//! Builders of compile bombs: components whose one core module is built to
//! make a compiler slow or hungry, generated here from their description so
//! that no hostile binary is checked in. Shared by the tests and the
//! `compile_bombs` example that measures them.

use wasm_encoder::{CodeSection, Component, FunctionSection, Module, ModuleSection, TypeSection};

/// A component of one core module with one `[] -> []` function per body.
/// Each body is the raw encoding: locals declaration, instructions, `end`.
pub(crate) fn component(bodies: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    for body in bodies {
        functions.function(0);
        code.raw(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

fn leb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A body of straight-line arithmetic on one local, about `bytes` long: the
/// compiler must build, optimize and allocate registers for all of it.
pub(crate) fn straight_line_body(bytes: usize) -> Vec<u8> {
    // One local i32; then `local.get 0; i32.const 1; i32.add; local.set 0`.
    let mut body = vec![1, 1, 0x7f];
    const STEP: [u8; 7] = [0x20, 0x00, 0x41, 0x01, 0x6a, 0x21, 0x00];
    body.reserve(bytes);
    while body.len() + STEP.len() < bytes {
        body.extend_from_slice(&STEP);
    }
    body.push(0x0b);
    body
}

/// `functions` bodies of straight-line code of `bytes` each.
pub(crate) fn straight_line(functions: usize, bytes: usize) -> Vec<u8> {
    component((0..functions).map(|_| straight_line_body(bytes)))
}

/// `functions` empty functions.
pub(crate) fn empty_functions(functions: usize) -> Vec<u8> {
    component((0..functions).map(|_| vec![0, 0x0b]))
}

/// One function with a `br_table` of `targets` targets.
pub(crate) fn branch_table(targets: u64) -> Vec<u8> {
    // block; i32.const 0; br_table 0 ... 0 0; end; end
    let mut body = vec![0, 0x02, 0x40, 0x41, 0x00, 0x0e];
    leb(targets, &mut body);
    body.extend(std::iter::repeat_n(
        0u8,
        usize::try_from(targets).unwrap_or(0) + 1,
    ));
    body.extend([0x0b, 0x0b]);
    component([body])
}

/// `functions` functions of `locals` i64 locals each, every one read once:
/// frames the compiler must lay out and spill.
pub(crate) fn huge_frames(functions: usize, locals: u64) -> Vec<u8> {
    let mut body = vec![1];
    leb(locals, &mut body);
    body.push(0x7e);
    for i in 0..locals {
        body.push(0x20);
        leb(i, &mut body);
        body.push(0x1a);
    }
    body.push(0x0b);
    component((0..functions).map(|_| body.clone()))
}

/// One function of `depth` nested blocks.
pub(crate) fn deep_nesting(depth: usize) -> Vec<u8> {
    let mut body = vec![0];
    body.extend([0x02, 0x40].repeat(depth));
    body.extend([0x0b].repeat(depth + 1));
    component([body])
}
