//! Script archives: every file of a `.zip` as (relative path, bytes), bounded. Entries that
//! would land outside the folder (`../`, absolute paths) are refused, not skipped; so is an
//! archive that unpacks to more than the bundle has room for, however small it is packed.

use std::io::Read;

use super::MAX_FILES;

/// Unpacks `bytes`; at most `limit` bytes unpacked and [`MAX_FILES`] files.
pub fn read(bytes: &[u8], limit: u64) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a zip archive: {e}"))?;
    if archive.len() > MAX_FILES {
        return Err(format!(
            "{} entries; at most {MAX_FILES} are allowed",
            archive.len()
        ));
    }
    let mut left = limit;
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
        // The declared size may lie: read at most one byte past what is left.
        let mut data = Vec::new();
        f.take(left.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| format!("zip entry {rel}: {e}"))?;
        left = left
            .checked_sub(data.len() as u64)
            .ok_or_else(|| format!("unpacks to more than {limit} bytes"))?;
        out.push((rel, data));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::read;
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
}
