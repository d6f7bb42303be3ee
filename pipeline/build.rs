//! Embeds Vigil's own `rules/` and `pipelines/` (at the workspace root) in the library, so
//! that `vigil run` started anywhere (not only in this repository) detects with them when no
//! rule path is configured. It writes a table of `(path, include_str!(...))` pairs to
//! `$OUT_DIR/builtin.rs`, which `src/rules.rs` includes.

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("the crate sits in the workspace")
        .to_owned();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=build.rs");
    let mut table = String::new();
    // Rules are searched recursively, as `rules::load_dirs` does; pipelines are the files
    // directly in their directory, as `rules::load_pipelines` does.
    for (constant, dir, recursive) in [("RULES", "rules", true), ("PIPELINES", "pipelines", false)]
    {
        println!("cargo:rerun-if-changed=../{dir}");
        let mut files = Vec::new();
        collect_yaml(&root.join(dir), recursive, &mut files);
        files.sort();
        table.push_str(&format!("pub const {constant}: &[(&str, &str)] = &[\n"));
        for file in files {
            let relative = file
                .strip_prefix(&root)
                .expect("under the manifest directory")
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            table.push_str(&format!(
                "    ({relative:?}, include_str!({:?})),\n",
                file.display().to_string()
            ));
        }
        table.push_str("];\n");
    }
    fs::write(out.join("builtin.rs"), table).expect("OUT_DIR is writable");
}

/// The `.yml` and `.yaml` files under `dir`, without rule test files (`*.tests.yml`).
fn collect_yaml(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            if recursive {
                collect_yaml(&path, recursive, out);
            }
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
        let test = name.ends_with(".tests.yml") || name.ends_with(".tests.yaml");
        if yaml && !test {
            out.push(path);
        }
    }
}
