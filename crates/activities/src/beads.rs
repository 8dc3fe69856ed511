//! The native Beads backend, minimal: read one bead from the project's `.beads/issues.jsonl` and
//! change its status and notes. The file is classic Beads' git-tracked JSONL (one issue per line);
//! fields CHUM does not know are kept as they are, and every write is atomic under a lock.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chum_core::proto::Bead;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum BeadsError {
    #[error("the beads file {0} does not exist; create beads with `bd create` / `br create` or `chum demo init`")]
    NoFile(PathBuf),
    #[error("bead {id} is not in {file}")]
    NotFound { id: String, file: PathBuf },
    #[error("{file}:{line}: not a JSON object: {detail}")]
    BadLine { file: PathBuf, line: usize, detail: String },
    #[error("{file}: {source}")]
    Io { file: PathBuf, source: std::io::Error },
}

/// One line of the file: its text as read, and the issue it holds.
type IssueLine = (String, Map<String, Value>);

/// The JSONL file of one project, e.g. `<repo>/.beads/issues.jsonl`.
pub struct BeadsFile {
    path: PathBuf,
    lock_path: PathBuf,
}

fn io(file: &Path) -> impl FnOnce(std::io::Error) -> BeadsError + '_ {
    move |source| BeadsError::Io {
        file: file.to_path_buf(),
        source,
    }
}

fn text(obj: &Map<String, Value>, key: &str) -> String {
    obj.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The RFC 3339 timestamp format Beads writes (`2026-11-22T00:04:44.112539728Z`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

impl BeadsFile {
    /// The lock file sits beside the JSONL file (Beads' own .gitignore ignores `*.lock`).
    pub fn new(path: PathBuf) -> BeadsFile {
        let lock_path = path.with_extension("jsonl.lock");
        BeadsFile { path, lock_path }
    }

    /// With the lock file somewhere else, e.g. inside `.git/` so it never shows in `git status`.
    pub fn with_lock(path: PathBuf, lock_path: PathBuf) -> BeadsFile {
        BeadsFile { path, lock_path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All issues, in file order, as raw JSON objects (unknown fields kept).
    pub fn read_all(&self) -> Result<Vec<Map<String, Value>>, BeadsError> {
        Ok(self.read_lines()?.into_iter().map(|(_, obj)| obj).collect())
    }

    /// Every issue with the line it was read from, so untouched issues are written back verbatim.
    fn read_lines(&self) -> Result<Vec<IssueLine>, BeadsError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BeadsError::NoFile(self.path.clone())),
            Err(e) => return Err(io(&self.path)(e)),
        };
        let mut issues = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(obj)) => issues.push((line.to_string(), obj)),
                Ok(_) => {
                    return Err(BeadsError::BadLine {
                        file: self.path.clone(),
                        line: i + 1,
                        detail: "a JSON value that is not an object".into(),
                    });
                }
                Err(e) => {
                    return Err(BeadsError::BadLine {
                        file: self.path.clone(),
                        line: i + 1,
                        detail: e.to_string(),
                    });
                }
            }
        }
        Ok(issues)
    }

    pub fn get(&self, id: &str) -> Result<Bead, BeadsError> {
        let issues = self.read_all()?;
        let obj = issues
            .iter()
            .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| BeadsError::NotFound {
                id: id.to_string(),
                file: self.path.clone(),
            })?;
        Ok(bead_from_json(obj))
    }

    /// Applies `change` to one issue and rewrites the file atomically, under an exclusive lock so
    /// concurrent Sharks of the same project do not lose each other's writes.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Map<String, Value>)) -> Result<Bead, BeadsError> {
        let lock_path = &self.lock_path;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)
            .map_err(io(lock_path))?;
        let _locked = FileLock::exclusive(&lock).map_err(io(lock_path))?;

        let mut issues = self.read_lines()?;
        let (line, obj) = issues
            .iter_mut()
            .find(|(_, o)| o.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| BeadsError::NotFound {
                id: id.to_string(),
                file: self.path.clone(),
            })?;
        change(obj);
        obj.insert("updated_at".into(), Value::String(now_rfc3339()));
        *line = serde_json::to_string(obj).map_err(|e| io(&self.path)(e.into()))?;
        let bead = bead_from_json(obj);

        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
        for (line, _) in &issues {
            writeln!(tmp, "{line}").map_err(io(&self.path))?;
        }
        tmp.as_file().sync_all().map_err(io(&self.path))?;
        tmp.persist(&self.path).map_err(|e| io(&self.path)(e.error))?;
        Ok(bead)
    }
}

/// Appends `note` to the bead's notes unless it is already there (a retried activity).
pub fn append_note(obj: &mut Map<String, Value>, note: &str) {
    if note.trim().is_empty() {
        return;
    }
    let notes = text(obj, "notes");
    if notes.contains(note.trim()) {
        return;
    }
    let joined = if notes.trim().is_empty() {
        note.trim().to_string()
    } else {
        format!("{}\n\n{}", notes.trim_end(), note.trim())
    };
    obj.insert("notes".into(), Value::String(joined));
}

pub fn bead_from_json(obj: &Map<String, Value>) -> Bead {
    Bead {
        id: text(obj, "id"),
        title: text(obj, "title"),
        description: text(obj, "description"),
        design: text(obj, "design"),
        acceptance_criteria: text(obj, "acceptance_criteria"),
        notes: text(obj, "notes"),
        status: text(obj, "status"),
        priority: obj.get("priority").and_then(Value::as_i64).unwrap_or(2) as i32,
        issue_type: text(obj, "issue_type"),
        labels: obj
            .get("labels")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

/// An advisory `flock` held until dropped.
struct FileLock<'a>(&'a std::fs::File);

impl<'a> FileLock<'a> {
    fn exclusive(file: &'a std::fs::File) -> std::io::Result<FileLock<'a>> {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a valid open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking a descriptor we locked.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by the real `br` 0.7.6 (shared/fixtures/beads-br), trimmed to two issues.
    const FIXTURE: &str = r#"{"id":"demo-3kt","title":"Validate config on startup","status":"open","priority":2,"issue_type":"task","created_at":"2026-11-22T00:04:44.112539728Z","created_by":"unknown","updated_at":"2026-11-22T00:04:44.411948572Z","source_repo":"demo","compaction_level":0,"original_size":0,"dependencies":[{"issue_id":"demo-3kt","depends_on_id":"demo-5qb","type":"blocks","created_at":"2026-11-22T00:04:44.411661213Z","created_by":"unknown","metadata":"{}","thread_id":""}]}
{"id":"demo-i76","title":"Document config keys","status":"open","priority":3,"issue_type":"chore","created_at":"2026-11-22T00:04:44.227732342Z","created_by":"unknown","updated_at":"2026-11-22T00:04:44.501015485Z","source_repo":"demo","compaction_level":0,"original_size":0,"labels":["docs"]}
"#;

    fn file(dir: &Path) -> BeadsFile {
        let path = dir.join("issues.jsonl");
        std::fs::write(&path, FIXTURE).unwrap();
        BeadsFile::new(path)
    }

    #[test]
    fn reads_a_bead_written_by_br() {
        let dir = tempfile::tempdir().unwrap();
        let bead = file(dir.path()).get("demo-i76").unwrap();
        assert_eq!(bead.title, "Document config keys");
        assert_eq!(bead.priority, 3);
        assert_eq!(bead.labels, vec!["docs"]);
        assert!(matches!(
            file(dir.path()).get("demo-zzz"),
            Err(BeadsError::NotFound { .. })
        ));
    }

    #[test]
    fn updates_keep_unknown_fields_order_and_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let beads = file(dir.path());
        beads
            .update("demo-3kt", |o| {
                o.insert("status".into(), "closed".into());
                append_note(o, "done by chum");
                append_note(o, "done by chum");
            })
            .unwrap();
        let text = std::fs::read_to_string(beads.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["status"], "closed");
        assert_eq!(first["notes"], "done by chum", "a note is appended once");
        assert_eq!(first["dependencies"][0]["depends_on_id"], "demo-5qb");
        assert_eq!(first["source_repo"], "demo");
        assert_ne!(first["updated_at"], "2026-11-22T00:04:44.411948572Z");
        assert_eq!(
            lines[1],
            FIXTURE.lines().nth(1).unwrap(),
            "untouched issues are byte-identical"
        );
    }

    #[test]
    fn a_corrupt_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        std::fs::write(&path, "{\"id\":\"a-1\"}\nnot json\n").unwrap();
        let err = BeadsFile::new(path).get("a-1").unwrap_err();
        assert!(err.to_string().contains(":2:"), "{err}");
    }
}
