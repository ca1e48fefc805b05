//! Copies the built web UI (`../ui/dist`, made by `npm run build` in `ui/`) into
//! `$OUT_DIR/ui` for embedding, with a `.gz` twin of each compressible file; writes a
//! placeholder page when the UI has not been built.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn compressible(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("html" | "js" | "mjs" | "css" | "svg" | "json" | "map" | "txt" | "wasm")
    )
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            let bytes = fs::read(&src)?;
            fs::write(&dst, &bytes)?;
            if compressible(&src) && bytes.len() > 1024 {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(&bytes)?;
                let gz = gz.finish()?;
                if gz.len() < bytes.len() {
                    let mut name = dst.into_os_string();
                    name.push(".gz");
                    fs::write(PathBuf::from(name), gz)?;
                }
            }
        }
    }
    Ok(())
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dist = manifest.join("../ui/dist");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("ui");
    let _ = fs::remove_dir_all(&out);
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        copy_dir(&dist, &out).expect("copy ui/dist");
    } else {
        // Watch ui/ itself so that building the UI later triggers a re-run.
        let ui = manifest.join("../ui");
        if ui.is_dir() {
            println!("cargo:rerun-if-changed={}", ui.display());
        } else {
            println!(
                "cargo:rerun-if-changed={}",
                manifest.join("build.rs").display()
            );
        }
        fs::create_dir_all(&out).expect("create OUT_DIR/ui");
        fs::write(
            out.join("index.html"),
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Kiln</title></head>\
             <body><h1>Kiln</h1><p>UI not built: run <code>cargo xtask setup</code> \
             (or <code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code>) and rebuild.</p>\
             <p>The API is up: try <a href=\"/api/v1/profile-types\">/api/v1/profile-types</a>.</p>\
             </body></html>\n",
        )
        .expect("write placeholder");
    }
}
