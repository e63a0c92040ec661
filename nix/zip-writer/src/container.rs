//! The zip container for one file (APPNOTE 6.3: local header, data, central
//! directory, end record). Fixed fields: version 2.0, made by Unix, deflate,
//! DOS time 1980-01-01 00:00:00, mode 0100755, no extra fields, no comment,
//! no data descriptor, no zip64 (the entry must stay under 4 GiB).

/// The deflate implementation, as recorded in the manifest.
pub const DEFLATE: &str = "miniz_oxide";
/// miniz_oxide's level 9 is zlib's level 9 in intent; 10 trades time for a
/// few bytes more.
pub const DEFAULT_LEVEL: u8 = 9;

const VERSION: u16 = 20; // 2.0: deflate
const MADE_BY_UNIX: u16 = 3 << 8;
const METHOD_DEFLATE: u16 = 8;
const DOS_TIME: u16 = 0; // 00:00:00
const DOS_DATE: u16 = 1 << 5 | 1; // 1980-01-01: year 0 from 1980, month 1, day 1
const MODE: u32 = 0o100_755; // regular file, rwxr-xr-x

pub fn single_entry(name: &str, data: &[u8], level: u8) -> Result<Vec<u8>, String> {
    if name.is_empty() || name.len() > usize::from(u16::MAX) {
        return Err(format!("entry name of {} bytes", name.len()));
    }
    let compressed = miniz_oxide::deflate::compress_to_vec(data, level);
    let size = u32::try_from(data.len()).map_err(|_| "input of 4 GiB or more needs zip64")?;
    let csize = u32::try_from(compressed.len()).map_err(|_| "deflate output needs zip64")?;
    let crc = crc32fast::hash(data);
    let name_len = name.len() as u16;

    // fields shared by the local and the central header, from "version needed"
    let mut common = Vec::with_capacity(26);
    for v in [VERSION, 0, METHOD_DEFLATE, DOS_TIME, DOS_DATE] {
        common.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, csize, size] {
        common.extend_from_slice(&v.to_le_bytes());
    }
    common.extend_from_slice(&name_len.to_le_bytes());
    common.extend_from_slice(&0u16.to_le_bytes()); // extra field length

    let mut out = Vec::with_capacity(compressed.len() + 2 * name.len() + 128);
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&common);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&compressed);
    let central_offset = u32::try_from(out.len()).map_err(|_| "zip needs zip64")?;

    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&(MADE_BY_UNIX | VERSION).to_le_bytes());
    out.extend_from_slice(&common);
    for v in [0u16, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes()); // comment length, disk, internal attributes
    }
    out.extend_from_slice(&(MODE << 16).to_le_bytes()); // external attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name.as_bytes());
    let central_size = u32::try_from(out.len()).map_err(|_| "zip needs zip64")? - central_offset;

    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        out.extend_from_slice(&v.to_le_bytes()); // disk, central disk, entries here, entries
    }
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Reads the zip back as an unzip tool would: end record -> central
    /// header -> local header -> data, checking every fixed field.
    fn read_back(zip: &[u8]) -> (String, Vec<u8>, u32) {
        let end = zip.len() - 22;
        assert_eq!(u32_at(zip, end), 0x0605_4b50);
        assert_eq!(u16_at(zip, end + 10), 1, "one entry");
        let central = u32_at(zip, end + 16) as usize;
        assert_eq!(
            u32_at(zip, end + 12) as usize,
            end - central,
            "central size"
        );
        assert_eq!(u32_at(zip, central), 0x0201_4b50);
        assert_eq!(u16_at(zip, central + 4), 0x0314, "made by Unix, 2.0");
        assert_eq!(u16_at(zip, central + 10), 8, "deflate");
        assert_eq!(
            (u16_at(zip, central + 12), u16_at(zip, central + 14)),
            (0, 0x21)
        );
        let name_len = usize::from(u16_at(zip, central + 28));
        assert_eq!(u16_at(zip, central + 30), 0, "no extra field");
        let mode = u32_at(zip, central + 38) >> 16;
        assert_eq!(u32_at(zip, central + 42), 0, "local header at 0");
        let name = String::from_utf8(zip[central + 46..central + 46 + name_len].to_vec()).unwrap();

        assert_eq!(u32_at(zip, 0), 0x0403_4b50);
        assert_eq!(zip[4..30], zip[central + 6..central + 32], "headers agree");
        assert_eq!(u16_at(zip, 28), 0, "no extra field");
        let csize = u32_at(zip, 18) as usize;
        let data_at = 30 + name_len;
        assert_eq!(
            data_at + csize,
            central,
            "data runs up to the central directory"
        );
        let data = miniz_oxide::inflate::decompress_to_vec(&zip[data_at..data_at + csize]).unwrap();
        assert_eq!(data.len(), u32_at(zip, 22) as usize);
        assert_eq!(crc32fast::hash(&data), u32_at(zip, 14));
        (name, data, mode)
    }

    #[test]
    fn round_trips_with_fixed_metadata() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let zip = single_entry("bootstrap", &data, DEFAULT_LEVEL).unwrap();
        let (name, back, mode) = read_back(&zip);
        assert_eq!((name.as_str(), mode), ("bootstrap", 0o100_755));
        assert_eq!(back, data);
        assert!(
            zip.len() < data.len() / 4,
            "compressible input was compressed"
        );
    }

    #[test]
    fn same_input_same_bytes_and_levels_differ() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 13) as u8).collect();
        let a = single_entry("bootstrap", &data, 9).unwrap();
        assert_eq!(a, single_entry("bootstrap", &data, 9).unwrap());
        let fast = single_entry("bootstrap", &data, 1).unwrap();
        assert_ne!(a, fast);
        assert_eq!(read_back(&fast).1, data);
    }

    #[test]
    fn empty_file_and_bad_names() {
        let (name, data, _) = read_back(&single_entry("x", b"", 9).unwrap());
        assert_eq!((name.as_str(), data.len()), ("x", 0));
        assert!(single_entry("", b"data", 9).is_err());
    }
}
