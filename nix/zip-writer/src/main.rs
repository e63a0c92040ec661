//! `event-recorder-zip SRC ZIP [ENTRY] [--level N]`: writes the Lambda zip.
//!
//! The zip holds one file. Every byte of the container is written here, field
//! by field, so no library default (extra fields, zip64, data descriptors) can
//! change them; only the deflate stream comes from a crate, pinned by
//! Cargo.lock. Prints the deflate library and level for the manifest.

use std::path::Path;
use std::process::ExitCode;

mod container;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("event-recorder-zip: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let mut level = container::DEFAULT_LEVEL;
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--level" => {
                let v = it.next().ok_or("--level needs a value")?;
                level = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=10).contains(l))
                    .ok_or_else(|| format!("--level {v}: expected 1..=10"))?;
            }
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
            _ => positional.push(arg),
        }
    }
    let (src, dst, entry) = match positional.as_slice() {
        [src, dst] => (src, dst, file_name(src)?),
        [src, dst, entry] => (src, dst, entry.clone()),
        _ => return Err("usage: event-recorder-zip SRC ZIP [ENTRY] [--level 1..=10]".into()),
    };
    let data = std::fs::read(src).map_err(|e| format!("reading {src}: {e}"))?;
    let zip = container::single_entry(&entry, &data, level)?;
    // write beside the destination, then rename: a zip is either whole or absent
    let tmp = format!("{dst}.tmp");
    std::fs::write(&tmp, &zip).map_err(|e| format!("writing {tmp}: {e}"))?;
    std::fs::rename(&tmp, dst).map_err(|e| format!("renaming {tmp} to {dst}: {e}"))?;
    Ok(format!("{} level {level}", container::DEFLATE))
}

fn file_name(path: &str) -> Result<String, String> {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{path}: no file name to use as the entry name"))
}
