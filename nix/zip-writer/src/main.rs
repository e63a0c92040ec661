//! `event-recorder-zip SRC ZIP [ENTRY] [--level N]`: writes the Lambda zip.
//! `event-recorder-zip --inflate-zlib`: inflates a zlib stream from stdin to
//! stdout (the dependency list cargo-auditable embeds in `bootstrap`), so the
//! recipe reads it without the host Python's zlib.
//!
//! The zip holds one file. Every byte of the container is written here, field
//! by field, so no library default (extra fields, zip64, data descriptors) can
//! change them; only the deflate stream comes from a crate, pinned by
//! Cargo.lock. Prints the deflate library and level for the manifest.

use std::path::Path;
use std::process::ExitCode;

mod container;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        // stdout carries the data: no summary line
        Some((mode, rest)) if mode == "--inflate-zlib" => inflate_zlib(rest).map(|()| None),
        _ => run(args).map(Some),
    };
    match result {
        Ok(summary) => {
            if let Some(summary) = summary {
                println!("{summary}");
            }
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

fn inflate_zlib(rest: &[String]) -> Result<(), String> {
    use std::io::{Read, Write};
    if !rest.is_empty() {
        return Err("usage: event-recorder-zip --inflate-zlib <IN >OUT".into());
    }
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let data = miniz_oxide::inflate::decompress_to_vec_zlib(&input)
        .map_err(|e| format!("not a zlib stream ({:?})", e.status))?;
    std::io::stdout()
        .write_all(&data)
        .map_err(|e| format!("writing stdout: {e}"))?;
    Ok(())
}
