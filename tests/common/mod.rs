//! What the golden-fixture tests share.

use std::path::PathBuf;

/// The `.safetensors` files of `tests/fixtures/<sub>`, sorted by name.
pub fn safetensors_in(sub: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fixtures' directory {dir:?}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    (dir, paths)
}
