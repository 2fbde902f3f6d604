//! Script archives: every file of a `.zip` as (relative path, bytes), bounded. Entries that
//! would land outside the folder (`../`, absolute paths) are refused, not skipped; so is an
//! archive that unpacks to more than the bundle has room for, however small it is packed, and
//! one that unpacks to more than [`MAX_RATIO`] times its packed size, entry by entry or in all.

use std::io::Read;

use super::MAX_FILES;

/// How many times its packed size an entry, or the whole archive, may unpack to. Text packs
/// 3–10:1; past 100:1 it is filler or a zip bomb.
pub const MAX_RATIO: u64 = 100;
/// Unpacked bytes an entry, or the archive, may always have whatever its ratio, so that small
/// but very regular files (a few KiB of spaces) are not refused.
pub const RATIO_GRACE_BYTES: u64 = 64 << 10;

/// The most `packed` bytes may unpack to.
fn ratio_cap(packed: u64) -> u64 {
    packed.saturating_mul(MAX_RATIO).max(RATIO_GRACE_BYTES)
}

/// Unpacks `bytes`; at most `limit` bytes unpacked, [`MAX_FILES`] files and [`MAX_RATIO`].
pub fn read(bytes: &[u8], limit: u64) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a zip archive: {e}"))?;
    if archive.len() > MAX_FILES {
        return Err(format!(
            "{} entries; at most {MAX_FILES} are allowed",
            archive.len()
        ));
    }
    let whole_cap = ratio_cap(bytes.len() as u64);
    let too_packed = |what: String, packed: u64| {
        format!(
            "{what} unpacks to more than {MAX_RATIO} times its packed size of {packed} bytes (store it uncompressed, or give the script as a folder)"
        )
    };
    let mut left = limit;
    let mut unpacked = 0u64;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let f = archive
            .by_index(i)
            .map_err(|e| format!("zip entry {i}: {e}"))?;
        if f.is_dir() {
            continue;
        }
        let Some(rel) = f.enclosed_name() else {
            return Err(format!(
                "zip entry {:?} points outside the folder",
                f.name()
            ));
        };
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let rel = rel.join("/");
        let packed = f.compressed_size();
        let cap = ratio_cap(packed);
        // The declared size may lie: read at most one byte past what is allowed.
        let mut data = Vec::new();
        f.take(left.min(cap).saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| format!("zip entry {rel}: {e}"))?;
        let n = data.len() as u64;
        left = left
            .checked_sub(n)
            .ok_or_else(|| format!("unpacks to more than {limit} bytes"))?;
        if n > cap {
            return Err(too_packed(format!("zip entry {rel}"), packed));
        }
        unpacked = unpacked.saturating_add(n);
        if unpacked > whole_cap {
            return Err(too_packed("the archive".into(), bytes.len() as u64));
        }
        out.push((rel, data));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{read, RATIO_GRACE_BYTES};
    use std::io::Write;

    fn archive(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in entries {
            w.start_file(*name, ::zip::write::SimpleFileOptions::default())
                .expect("entry");
            w.write_all(body.as_bytes()).expect("write");
        }
        w.finish().expect("finish").into_inner()
    }

    #[test]
    fn zip_entries_stay_inside_the_folder() {
        let ok = read(&archive(&[("main.js", "x"), ("data/a.csv", "y")]), 100).expect("zip");
        assert_eq!(
            ok,
            vec![
                ("data/a.csv".to_string(), b"y".to_vec()),
                ("main.js".to_string(), b"x".to_vec())
            ]
        );
        let evil = read(&archive(&[("../evil.js", "x")]), 100).expect_err("zip slip");
        assert!(evil.contains("points outside the folder"), "{evil}");
        assert!(read(b"not a zip", 100).is_err());
    }

    #[test]
    fn an_archive_that_unpacks_past_the_limit_is_refused() {
        let big = "a".repeat(10_000);
        let packed = archive(&[("big.txt", &big)]);
        assert!(packed.len() < 1_000, "deflate packs it small");
        let e = read(&packed, 5_000).expect_err("too large");
        assert!(e.contains("more than 5000 bytes"), "{e}");
        assert_eq!(read(&packed, 10_000).expect("fits")[0].1.len(), 10_000);
    }

    #[test]
    fn a_highly_compressible_entry_is_refused_by_its_ratio() {
        // 5 MiB of one letter packs to a few KiB: over 100:1, though under the size limit.
        let bomb = "a".repeat(5 << 20);
        let packed = archive(&[("main.js", "x"), ("bomb.txt", &bomb)]);
        assert!(packed.len() < 50_000, "{}", packed.len());
        let e = read(&packed, 7 << 20).expect_err("ratio");
        assert!(
            e.starts_with("zip entry bomb.txt unpacks to more than 100 times its packed size"),
            "{e}"
        );
        // Small regular files are within the grace, and ordinary text within the ratio.
        let spaces = " ".repeat(RATIO_GRACE_BYTES as usize);
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let ok = read(&archive(&[("a.txt", &spaces), ("b.txt", &text)]), 7 << 20).expect("fine");
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn many_entries_within_their_ratio_are_refused_by_the_archive_s() {
        // Each entry is within the per-entry grace; together they are 100:1 past the archive.
        let chunk = "a".repeat(RATIO_GRACE_BYTES as usize);
        let names: Vec<String> = (0..40).map(|i| format!("f{i}.txt")).collect();
        let entries: Vec<(&str, &str)> =
            names.iter().map(|n| (n.as_str(), chunk.as_str())).collect();
        let packed = archive(&entries);
        assert!(((40 * chunk.len()) as u64) > 100 * packed.len() as u64);
        let e = read(&packed, 7 << 20).expect_err("ratio");
        assert!(
            e.starts_with("the archive unpacks to more than 100 times"),
            "{e}"
        );
    }
}
