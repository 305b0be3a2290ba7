//! Reading and writing safetensors files: f32 tensors plus int64 `lengths`.
//!
//! Writes go to a temporary file beside the target and are renamed into place, so a failed
//! run never leaves a half-written output.

use crate::bail;
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// The values of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// float32 values.
    F32(Vec<f32>),
    /// int64 values (`lengths`).
    I64(Vec<i64>),
}

/// One tensor of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its dimensions.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Data,
}

/// Every tensor of a file by name, and the file's string metadata.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    /// The file's path, for messages.
    pub path: String,
    /// The tensors not taken yet, by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The header's `__metadata__`.
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Reads and checks a whole safetensors file (f32 and int64 tensors only).
    pub fn read(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let cannot = |e: std::io::Error| Error(format!("cannot read {name}: {e}"));
        // Not a folder or a device (/dev/zero would be read without end); a pipe ends.
        if !readable_kind(&std::fs::metadata(path).map_err(cannot)?) {
            bail!("cannot read {name}: a folder or device, expected a safetensors file");
        }
        let bytes = std::fs::read(path).map_err(cannot)?;
        Self::parse(&name, &bytes)
    }

    /// Parses the bytes of a safetensors file; `name` is used in messages.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |e: safetensors::SafeTensorError| {
            Error(format!(
                "{name} is not a valid safetensors file ({e}); expected a file written by \
                 safetensors.torch.save_file"
            ))
        };
        let (header_len, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        // The crate keeps the last of two entries with one name: refuse the file instead.
        if let Some(key) = duplicate_key(&bytes[8..8 + header_len]) {
            bail!("{name}: the header names tensor '{key}' twice, expected each name once");
        }
        let st = SafeTensors::deserialize(bytes).map_err(bad)?;
        let mut tensors = BTreeMap::new();
        for (key, view) in st.tensors() {
            let raw = view.data();
            let data = match view.dtype() {
                Dtype::F32 => Data::F32(
                    raw.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
                Dtype::I64 => Data::I64(
                    raw.chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .collect(),
                ),
                other => bail!(
                    "{name}: tensor '{key}' has dtype {other:?}, expected float32 (int64 for \
                     lengths)"
                ),
            };
            let shape = view.shape().to_vec();
            tensors.insert(key, Tensor { shape, data });
        }
        let metadata = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok(TensorFile {
            path: name.to_string(),
            tensors,
            metadata,
        })
    }

    /// Removes and returns an f32 tensor, checking its shape; `None` if absent.
    pub fn take_f32(&mut self, key: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        let Some(t) = self.tensors.remove(key) else {
            return Ok(None);
        };
        if t.shape != shape {
            bail!(
                "{}: '{key}' has shape {:?}, expected {:?}",
                self.path,
                t.shape,
                shape
            );
        }
        match t.data {
            Data::F32(v) => Ok(Some(v)),
            Data::I64(_) => bail!("{}: '{key}' is int64, expected float32", self.path),
        }
    }

    /// Like [`TensorFile::take_f32`], but the tensor must be there.
    pub fn require_f32(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.take_f32(key, shape)? {
            Some(v) => Ok(v),
            None => bail!(
                "{}: missing tensor '{key}', expected float32 of shape {shape:?}",
                self.path
            ),
        }
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.shape.as_slice())
    }

    /// Fails on any tensor left over after the known ones were taken.
    pub fn expect_empty(&self, known: &str) -> Result<()> {
        if let Some(key) = self.tensors.keys().next() {
            bail!(
                "{}: unexpected tensor '{key}', expected only {known}",
                self.path
            );
        }
        Ok(())
    }
}

/// The first top-level key that a safetensors JSON header (already parsed by the crate) holds
/// twice, if any.
fn duplicate_key(header: &[u8]) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct FirstDuplicate;
    impl<'de> Visitor<'de> for FirstDuplicate {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<M: MapAccess<'de>>(
            self,
            mut map: M,
        ) -> std::result::Result<Self::Value, M::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !seen.insert(key.clone()) {
                    return Ok(Some(key));
                }
            }
            Ok(None)
        }
    }
    serde_json::Deserializer::from_slice(header)
        .deserialize_map(FirstDuplicate)
        .ok()
        .flatten()
}

/// A regular file or a pipe (`--input /dev/stdin`), not a folder or a device.
fn readable_kind(m: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        m.is_file() || m.file_type().is_fifo()
    }
    #[cfg(not(unix))]
    {
        m.is_file()
    }
}

/// Where to write the results given as `out`: a regular file or a new one, in a folder that
/// exists, and none of `inputs`; a symbolic link resolved to its target (so that the rename of
/// [`write_f32`] replaces the file the link names, not the link). Checked before any work.
pub fn output_path(out: &Path, inputs: &[&Path]) -> Result<std::path::PathBuf> {
    let name = out.display();
    let resolved = match std::fs::symlink_metadata(out) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(out) {
            Ok(target) => target,
            // A link to a file not there yet: its target, read from the link's folder.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let target = std::fs::read_link(out)
                    .map_err(|e| Error(format!("cannot write {name}: {e}")))?;
                out.parent().unwrap_or(Path::new(".")).join(target)
            }
            Err(e) => bail!("cannot write {name}: {e}"),
        },
        _ => out.to_path_buf(),
    };
    match std::fs::metadata(&resolved) {
        Ok(m) if !m.is_file() => {
            bail!("cannot write {name}: it exists and is not a regular file, expected a file path")
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot write {name}: {e}"),
    }
    let dir = folder_of(&resolved);
    if !dir.is_dir() {
        bail!(
            "cannot write {name}: no folder {}, expected an existing one",
            dir.display()
        );
    }
    // Same file: compare what the paths name (links, `./`, `..` resolved).
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    if let Some(target) = canon(&resolved) {
        if let Some(input) = inputs.iter().find(|p| canon(p).as_ref() == Some(&target)) {
            bail!(
                "--out {name} is the input {}, expected a path of its own",
                input.display()
            );
        }
    }
    Ok(resolved)
}

/// The folder a file path is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes f32 tensors to `path` atomically (a temporary file beside it, then a rename).
pub fn write_f32(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let name = path.display();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((key, shape, _), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (key.clone(), v))
                .map_err(|e| Error(format!("cannot encode '{key}' for {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let encoded = safetensors::serialize(views, None)
        .map_err(|e| Error(format!("cannot encode {name}: {e}")))?;
    let dir = folder_of(path);
    let file_name = path
        .file_name()
        .ok_or_else(|| Error(format!("cannot write {name}: expected a file path")))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let cleanup = |e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        Error(format!("cannot write {name}: {e}"))
    };
    std::fs::write(&tmp, &encoded).map_err(cleanup)?;
    std::fs::rename(&tmp, path).map_err(cleanup)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of one header and `data`, as safetensors lays it out.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let one = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let twice = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let data = 1.5f32.to_le_bytes();
        let f = TensorFile::parse("one", &file(one, &data)).expect("a valid file");
        assert_eq!(f.tensors["a"].data, Data::F32(vec![1.5]));
        let e = TensorFile::parse("twice", &file(twice, &data)).unwrap_err();
        assert!(e.0.contains("names tensor 'a' twice"), "{}", e.0);
    }
}
