//! Go modules and the WASI preview1 adapter. The adapter needs memory of its own from the
//! first WASI call on, which the Go runtime makes while it starts, before any Go code such as
//! `cabi_realloc` can run; and memory the adapter took with `memory.grow` would be handed out
//! again by Go's heap, which assumes it owns the end of linear memory. So a Go plugin declares
//! a static arena that starts with [`ARENA_MARKER`] (guest-plugins/transforms-go/abi.go), and
//! the module gets `cabi_realloc_adapter`, a bump allocator in plain WebAssembly over it, which
//! wit-component hands to the adapter.
//!
//! The arena is found in the module's data section: the Go linker writes the marker at the
//! variable's address and leaves the zeros after it out of the file.

use anyhow::{Context, bail};
use wasmparser::{DataKind, DataSectionReader, Operator};

/// The first bytes of a Go plugin's adapter arena: `var adapterArena = [ARENA_LEN]byte{...}`.
pub const ARENA_MARKER: &[u8; 16] = b"sluice.adapter.1";

/// The size of the arena, in bytes.
pub const ARENA_LEN: u32 = 256 << 10;

/// The address of the arena, if the module declares one.
pub fn find_arena(data: DataSectionReader) -> anyhow::Result<Option<u32>> {
    let mut found = None;
    for segment in data {
        let segment = segment?;
        let DataKind::Active { offset_expr, .. } = segment.kind else {
            continue;
        };
        let Some(at) = segment
            .data
            .windows(ARENA_MARKER.len())
            .position(|w| w == ARENA_MARKER)
        else {
            continue;
        };
        let Operator::I32Const { value } = offset_expr.get_operators_reader().read()? else {
            bail!("a data segment holding the adapter arena has a non-constant offset");
        };
        if found.is_some() {
            bail!("the adapter arena marker occurs twice in the module");
        }
        found = Some(u32::try_from(value)? + u32::try_from(at)?);
    }
    Ok(found)
}

fn read_leb(b: &[u8], pos: &mut usize) -> anyhow::Result<u32> {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = *b.get(*pos).context("truncated LEB128")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(u32::try_from(value)?);
        }
        shift += 7;
    }
}

fn write_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write_sleb(out: &mut Vec<u8>, v: i32) {
    let mut v = i64::from(v);
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

/// A vector section's entries: the count, and the bytes after it.
fn vec_section(body: &[u8]) -> anyhow::Result<(u32, &[u8])> {
    let mut pos = 0;
    let n = read_leb(body, &mut pos)?;
    Ok((n, &body[pos..]))
}

fn rebuild_vec(count: u32, entries: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_leb(&mut out, count + 1);
    out.extend_from_slice(entries);
    out.extend_from_slice(extra);
    out
}

/// Appends `cabi_realloc_adapter(old, old_size, align, size) -> ptr` to the module: a bump
/// allocator over `[arena, arena + ARENA_LEN)` whose first word holds the next free address.
/// It never reallocates (a non-null `old` traps) and traps when the arena is full.
pub fn add_adapter_realloc(module: &[u8], arena: u32) -> anyhow::Result<Vec<u8>> {
    let len = ARENA_LEN;
    const I32: u8 = 0x7f;
    let mut sections: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut pos = 8;
    while pos < module.len() {
        let id = module[pos];
        pos += 1;
        let size = read_leb(module, &mut pos)? as usize;
        sections.push((id, module[pos..pos + size].to_vec()));
        pos += size;
    }
    fn body(sections: &[(u8, Vec<u8>)], id: u8) -> Option<Vec<u8>> {
        sections
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
    }
    fn replace(sections: &mut [(u8, Vec<u8>)], id: u8, new: Vec<u8>) {
        if let Some(s) = sections.iter_mut().find(|(i, _)| *i == id) {
            s.1 = new;
        }
    }
    // The function type (i32 i32 i32 i32) -> i32, added if missing.
    let types = body(&sections, 1).context("no type section")?;
    let (type_count, mut rest) = vec_section(&types)?;
    let mut type_index = None;
    for i in 0..type_count {
        if rest.first() != Some(&0x60) {
            bail!("unexpected type form in the module");
        }
        let mut p = 1;
        let params = read_leb(rest, &mut p)? as usize;
        let param_types = &rest[p..p + params];
        p += params;
        let results = read_leb(rest, &mut p)? as usize;
        let result_types = &rest[p..p + results];
        p += results;
        if param_types == [I32; 4] && result_types == [I32] {
            type_index = Some(i);
        }
        rest = &rest[p..];
    }
    let sig = [0x60, 4, I32, I32, I32, I32, 1, I32];
    let type_index = match type_index {
        Some(i) => i,
        None => {
            let (n, entries) = vec_section(&types)?;
            let rebuilt = rebuild_vec(n, entries, &sig);
            replace(&mut sections, 1, rebuilt);
            type_count
        }
    };
    // The new function's index: after every imported and defined function.
    let mut imported = 0;
    if let Some(imports) = body(&sections, 2) {
        let (n, mut rest) = vec_section(&imports)?;
        for _ in 0..n {
            let mut p = 0;
            for _ in 0..2 {
                let l = read_leb(rest, &mut p)? as usize;
                p += l;
            }
            let kind = rest[p];
            p += 1;
            match kind {
                0x00 => {
                    read_leb(rest, &mut p)?;
                    imported += 1;
                }
                0x01 => {
                    p += 1;
                    let flags = read_leb(rest, &mut p)?;
                    read_leb(rest, &mut p)?;
                    if flags & 1 != 0 {
                        read_leb(rest, &mut p)?;
                    }
                }
                0x02 => {
                    let flags = read_leb(rest, &mut p)?;
                    read_leb(rest, &mut p)?;
                    if flags & 1 != 0 {
                        read_leb(rest, &mut p)?;
                    }
                }
                0x03 => p += 2,
                other => bail!("unexpected import kind {other} in the module"),
            }
            rest = &rest[p..];
        }
    }
    let functions = body(&sections, 3).context("no function section")?;
    let (defined, entries) = vec_section(&functions)?;
    let mut idx = Vec::new();
    write_leb(&mut idx, type_index);
    let rebuilt = rebuild_vec(defined, entries, &idx);
    replace(&mut sections, 3, rebuilt);
    let func_index = imported + defined;

    // The body: locals (1 i32 `p`), then the bump allocation.
    let arena = i32::try_from(arena)?;
    let end = arena
        .checked_add(i32::try_from(len)?)
        .context("arena address overflows")?;
    let mut code = vec![1, 1, I32]; // one local group: 1 x i32 (local 4)
    let c = &mut code;
    let i32_const = |c: &mut Vec<u8>, v: i32| {
        c.push(0x41);
        write_sleb(c, v);
    };
    // if old != 0 { unreachable }
    c.extend([0x20, 0, 0x04, 0x40, 0x00, 0x0b]);
    // p = load(arena); if p == marker { p = arena + 16 }: the marker's first word is there
    // until the first allocation writes the next free address over it.
    i32_const(c, arena);
    c.extend([0x28, 2, 0, 0x22, 4]);
    i32_const(
        c,
        i32::from_le_bytes(*ARENA_MARKER.first_chunk().expect("16 bytes")),
    );
    c.extend([0x46, 0x04, 0x40]);
    i32_const(c, arena + ARENA_MARKER.len() as i32);
    c.extend([0x21, 4, 0x0b]);
    // p = (p + align - 1) & -align
    c.extend([0x20, 4, 0x20, 2, 0x6a]);
    i32_const(c, 1);
    c.push(0x6b);
    i32_const(c, 0);
    c.extend([0x20, 2, 0x6b, 0x71, 0x21, 4]);
    // if p + size > end { unreachable }
    c.extend([0x20, 4, 0x20, 3, 0x6a]);
    i32_const(c, end);
    c.extend([0x4b, 0x04, 0x40, 0x00, 0x0b]);
    // store(arena, p + size); p
    i32_const(c, arena);
    c.extend([0x20, 4, 0x20, 3, 0x6a, 0x36, 2, 0, 0x20, 4, 0x0b]);
    let mut entry = Vec::new();
    write_leb(&mut entry, code.len() as u32);
    entry.extend(code);
    let codes = body(&sections, 10).context("no code section")?;
    let (n, entries) = vec_section(&codes)?;
    let rebuilt = rebuild_vec(n, entries, &entry);
    replace(&mut sections, 10, rebuilt);

    let exports = body(&sections, 7).context("no export section")?;
    let (n, entries) = vec_section(&exports)?;
    let name = b"cabi_realloc_adapter";
    let mut export = Vec::new();
    write_leb(&mut export, name.len() as u32);
    export.extend_from_slice(name);
    export.push(0x00);
    write_leb(&mut export, func_index);
    let rebuilt = rebuild_vec(n, entries, &export);
    replace(&mut sections, 7, rebuilt);

    let mut out = module[..8].to_vec();
    for (id, body) in sections {
        out.push(id);
        write_leb(&mut out, body.len() as u32);
        out.extend(body);
    }
    Ok(out)
}
