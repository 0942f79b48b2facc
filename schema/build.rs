//! Generates the Rust types for `tl/secret_api.tl` and `tl/api_subset.tl` into `OUT_DIR`.
//! Any parse error or constructor-id (CRC32) mismatch fails the build.

use std::path::Path;
use std::{env, fs, process};

/// (file, module root, layer of the lines before the first `// layer N` heading, output)
const SCHEMAS: &[(&str, &str, Option<u32>, &str)] = &[
    ("tl/secret_api.tl", "crate::e2e", Some(8), "e2e.rs"),
    ("tl/api_subset.tl", "crate::api", None, "api.rs"),
];

fn main() {
    let Some(out_dir) = env::var_os("OUT_DIR") else {
        eprintln!("OUT_DIR is not set");
        process::exit(1);
    };
    for (file, root, layer, out) in SCHEMAS {
        println!("cargo:rerun-if-changed={file}");
        let tl = fs::read_to_string(file).unwrap_or_else(|e| fail(file, &e));
        let rust =
            secretchat_codegen::generate(&tl, root, *layer).unwrap_or_else(|e| fail(file, &e));
        fs::write(Path::new(&out_dir).join(out), rust).unwrap_or_else(|e| fail(out, &e));
    }
    println!("cargo:rerun-if-changed=build.rs");
}

fn fail(what: &str, e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {what}: {e}");
    process::exit(1);
}
