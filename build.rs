//! Builds `build/malloc_tune.c` (glibc malloc settings applied before `main`, see that file)
//! and links its object into the binaries and the integration tests; the library itself is
//! left as it is, so an embedder keeps its own allocator policy. Only on Linux with glibc.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build/malloc_tune.c");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || target_env != "gnu" {
        return;
    }
    let objects = cc::Build::new()
        .file("build/malloc_tune.c")
        .warnings(true)
        .extra_warnings(true)
        .cargo_metadata(false)
        .try_compile_intermediates();
    match objects {
        Ok(objects) => {
            for object in objects {
                // An object (not an archive) on the link line is linked whole, so its
                // constructor is kept although nothing refers to it.
                println!("cargo:rustc-link-arg-bins={}", object.display());
                println!("cargo:rustc-link-arg-tests={}", object.display());
            }
        }
        Err(e) => println!("cargo:warning=glibc malloc settings not built: {e}"),
    }
}
