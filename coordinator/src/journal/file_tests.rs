use std::io;

use super::*;

/// The names in `dir`, sorted (temp files too: they start with a dot).
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

fn disk_full() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

#[test]
fn a_written_file_has_its_content_and_no_temp_file_is_left() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("summary.json");
    write_atomic(&p, b"{\"a\":1}\n").expect("written");
    assert_eq!(std::fs::read(&p).expect("read"), b"{\"a\":1}\n");
    assert_eq!(names(d.path()), ["summary.json"]);
}

#[test]
fn a_written_file_is_readable_like_one_fs_write_makes() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("temp dir");
    let (ours, theirs) = (d.path().join("a"), d.path().join("b"));
    write_atomic(&ours, b"x").expect("written");
    std::fs::write(&theirs, b"x").expect("written");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode();
    assert_eq!(mode(&ours), mode(&theirs));
}

#[test]
fn a_private_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("identity.json");
    write_private(&p, b"{}").expect("written");
    let mode = std::fs::metadata(&p)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(names(d.path()), ["identity.json"]);
}

#[test]
fn a_second_write_replaces_the_first_whole() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("junit.xml");
    write_atomic(&p, &[b'a'; 10_000]).expect("first");
    write_atomic(&p, b"short").expect("second");
    assert_eq!(std::fs::read(&p).expect("read"), b"short");
    assert_eq!(names(d.path()), ["junit.xml"]);
}

#[test]
fn a_disk_that_fills_mid_write_leaves_no_file_under_the_final_name() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("summary.json");
    let e = write_atomic_with(&p, 0o666, |f| {
        f.write_all(b"{\"run\": \"trunc")?;
        Err(disk_full())
    })
    .expect_err("the write fails");
    assert_eq!(e.step, Step::Write);
    assert_eq!(e.path, p);
    let text = e.to_string();
    assert!(
        text.contains("summary.json") && text.contains("No space left on device"),
        "{text}"
    );
    assert!(names(d.path()).is_empty(), "{:?}", names(d.path()));
}

#[test]
fn a_failed_replacement_keeps_the_old_file_whole() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("timeseries.csv");
    write_atomic(&p, b"old,complete\n").expect("first");
    write_atomic_with(&p, 0o666, |f| {
        f.write_all(b"new,half")?;
        Err(disk_full())
    })
    .expect_err("the write fails");
    assert_eq!(std::fs::read(&p).expect("read"), b"old,complete\n");
    assert_eq!(names(d.path()), ["timeseries.csv"]);
}

#[test]
fn a_final_name_that_is_a_folder_fails_the_rename_and_leaves_no_temp_file() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("spec.json");
    std::fs::create_dir(&p).expect("a folder in the way");
    let e = write_atomic(&p, b"{}").expect_err("cannot replace a folder");
    assert_eq!(e.step, Step::Rename);
    assert!(e.to_string().contains("spec.json"), "{e}");
    assert!(p.is_dir());
    assert_eq!(names(d.path()), ["spec.json"]);
}

#[test]
fn a_missing_folder_fails_naming_the_file() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("gone").join("summary.json");
    let e = write_atomic(&p, b"{}").expect_err("no folder");
    assert_eq!(e.step, Step::CreateTemp);
    assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
    assert!(
        e.to_string()
            .starts_with(&format!("creating a temp file for {}", p.display())),
        "{e}"
    );
}

#[test]
fn remove_is_quiet_about_a_missing_file() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("summary.json");
    remove(&p).expect("nothing to remove");
    std::fs::write(&p, b"{}").expect("write");
    remove(&p).expect("removed");
    assert!(!p.exists());
}

#[test]
fn lines_are_appended_whole_and_the_file_is_created_once() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("notifications.jsonl");
    append_line(&p, "{\"n\":1}").expect("first");
    append_line(&p, "{\"n\":2}").expect("second");
    assert_eq!(
        std::fs::read_to_string(&p).expect("read"),
        "{\"n\":1}\n{\"n\":2}\n"
    );
}

#[test]
fn a_failed_append_is_cut_off_and_the_next_line_starts_clean() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("notifications.jsonl");
    append_line(&p, "{\"n\":1}").expect("first");
    let e = append_line_with(&p, "{\"n\":2,\"long\":true}", |f, bytes| {
        f.write_all(&bytes[..5])?;
        Err(disk_full())
    })
    .expect_err("the append fails");
    assert_eq!(e.step, Step::Write);
    assert!(e.to_string().contains("notifications.jsonl"), "{e}");
    assert_eq!(std::fs::read_to_string(&p).expect("read"), "{\"n\":1}\n");
    append_line(&p, "{\"n\":3}").expect("third");
    assert_eq!(
        std::fs::read_to_string(&p).expect("read"),
        "{\"n\":1}\n{\"n\":3}\n"
    );
}

#[test]
fn a_line_a_crash_left_unterminated_is_closed_before_the_next() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join("notifications.jsonl");
    std::fs::write(&p, "{\"n\":1}\n{\"n\":").expect("a torn file");
    append_line(&p, "{\"n\":3}").expect("appended");
    let text = std::fs::read_to_string(&p).expect("read");
    assert_eq!(text, "{\"n\":1}\n{\"n\":\n{\"n\":3}\n");
    assert_eq!(text.lines().last(), Some("{\"n\":3}"));
}

#[test]
fn an_append_to_a_folder_fails_naming_it() {
    let d = tempfile::tempdir().expect("temp dir");
    let e = append_line(d.path(), "{}").expect_err("a folder");
    assert_eq!(e.step, Step::Open);
    assert!(
        e.to_string().contains(&d.path().display().to_string()),
        "{e}"
    );
}
