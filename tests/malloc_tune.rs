//! The glibc malloc settings of build/malloc_tune.c, which build.rs links into the binaries
//! and into these integration tests: fixed mmap and trim thresholds (large blocks are
//! mapped and given back when freed, whatever was freed before) and a thread that gives
//! free pages back. Linux with glibc only; skipped when the environment tunes malloc itself
//! (the settings then step aside).

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::fs;
use std::hint::black_box;

fn operator_tuned() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."))
        || std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MALLOC_"))
}

/// The mapping in /proc/self/maps that holds `addr`: (start, end).
fn mapping_of(addr: usize) -> Option<(usize, usize)> {
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let range = line.split_whitespace().next()?;
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (start <= addr && addr < end).then_some((start, end))
    })
}

#[test]
fn a_large_block_is_mapped_even_after_a_larger_one_was_freed() {
    if operator_tuned() {
        return;
    }
    // With glibc's defaults, freeing this mapped 8 MiB block would raise the mmap threshold
    // to 8 MiB, and the 256 KiB block below would come from an arena (kept after free).
    let big: Vec<u8> = black_box(Vec::with_capacity(8 << 20));
    drop(big);
    let block: Vec<u8> = black_box(Vec::with_capacity(256 << 10));
    let addr = block.as_ptr() as usize;
    let (start, end) = mapping_of(addr).expect("the block is in some mapping");
    // A mapped block is alone in its mapping, after glibc's two-word chunk header.
    assert_eq!(
        addr - start,
        2 * size_of::<usize>(),
        "the 256 KiB block is not at the start of its own mapping ({start:#x}-{end:#x})"
    );
    assert!(
        end - start <= (256 << 10) + 4096,
        "mapping {start:#x}-{end:#x}"
    );
}

#[test]
fn a_thread_gives_free_pages_back() {
    if operator_tuned() {
        return;
    }
    let names: Vec<String> = fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "noviqi-malloc"),
        "no noviqi-malloc thread among {names:?}"
    );
}
