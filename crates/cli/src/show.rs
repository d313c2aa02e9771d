//! `stasis show`: a readable summary of an image directory, or every field as JSON.
//!
//! Images are untrusted input: every file is decoded on its own, and one that is missing,
//! truncated or corrupt becomes a line in the output (or an `error` member in JSON), never
//! the end of the command.

mod names;
mod summary;
mod tree;

use std::path::Path;

use stasis_images::PAGE_SIZE;
use stasis_images::decode::{self, Decoded};

/// Every image file of a directory, decoded or with the reason it could not be.
pub(crate) type ImageSet = decode::DecodedDir;

/// Shows `target` (a directory of images or one image file).
pub fn run(target: &Path, json: bool) -> Result<(), String> {
    let meta = std::fs::metadata(target).map_err(|e| format!("{}: {e}", target.display()))?;
    let out = if meta.is_dir() {
        let set = decode::decode_dir(target).map_err(|e| e.to_string())?;
        if set.images.is_empty() {
            return Err(format!("{}: no image files found", target.display()));
        }
        if json {
            json_text(serde_json::to_string_pretty(&set))?
        } else {
            summary::render(&set)
        }
    } else {
        let decoded = decode::decode_file(target).map_err(|e| e.to_string())?;
        let name = file_name(target);
        if let Decoded::Unknown { magic } = decoded {
            return Err(format!("{name}: unknown magic {magic:#010x}"));
        }
        if json {
            json_text(serde_json::to_string_pretty(&decoded))?
        } else {
            render_file(&name, &decoded)
        }
    };
    print!("{out}");
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Finishes pretty JSON output. Callers serialize directly rather than through
/// `serde_json::Value`, which would sort the fields instead of keeping the order of the
/// `.proto` files.
fn json_text(res: serde_json::Result<String>) -> Result<String, String> {
    res.map(|s| s + "\n")
        .map_err(|e| format!("JSON output: {e}"))
}

/// One image file for people: its kind, then each entry as an indented tree of fields.
pub(crate) fn render_file(name: &str, decoded: &Decoded) -> String {
    let mut out = String::new();
    match decoded {
        Decoded::Raw { size, .. } => {
            out += &format!(
                "{name}: raw page contents, {} ({} pages)\n",
                names::size(*size),
                size / PAGE_SIZE
            );
        }
        Decoded::Unknown { magic } => out += &format!("{name}: unknown magic {magic:#010x}\n"),
        Decoded::Image { kind, entries } => {
            let n = entries.len();
            out += &format!(
                "{name}: {} image, {n} entr{}\n",
                kind.name(),
                if n == 1 { "y" } else { "ies" }
            );
            for (i, e) in entries.iter().enumerate() {
                out += &format!("entry {i}:\n");
                match serde_json::to_string(e)
                    .ok()
                    .as_deref()
                    .and_then(tree::parse)
                {
                    Some(node) => tree::write(&mut out, &node, 1),
                    None => out += "  (cannot be shown)\n",
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
