//! The native Beads backend, minimal: read one bead from the project's `.beads/issues.jsonl` and
//! change its status and notes. The file is classic Beads' git-tracked JSONL (one issue per line);
//! fields CHUM does not know are kept as they are, and every write is atomic under a lock.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chum_core::new_bead::NewBead;
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
    #[error("bead {id} already exists in {file}")]
    Exists { id: String, file: PathBuf },
    /// bd 0.50+ keeps its issues in a Dolt database and writes no JSONL: the native backend would
    /// read a stale file, and write changes bd never sees.
    #[error(
        "{0} holds a Dolt database (bd 0.50 and later), which the native backend cannot read or write; set beads_backend = \"cli\" and beads_cli = \"bd\" for the project"
    )]
    DoltStore(PathBuf),
}

/// Whether the Beads directory `dir` holds bd's Dolt store (`dolt/`, or `metadata.json` saying
/// `"database": "dolt"`).
pub fn is_dolt_store(dir: &Path) -> bool {
    if dir.join("dolt").is_dir() {
        return true;
    }
    std::fs::read_to_string(dir.join("metadata.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|m| m.get("database").and_then(Value::as_str) == Some("dolt"))
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
        if let Some(dir) = self.path.parent()
            && is_dolt_store(dir)
        {
            return Err(BeadsError::DoltStore(dir.to_path_buf()));
        }
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

    /// Runs `change` on every issue line under an exclusive lock (so concurrent writers do not lose
    /// each other's changes), then rewrites the file atomically, sorted by id. Lines whose text is
    /// emptied by `change` are re-serialized from their object; the others are kept byte for byte.
    fn modify<R>(&self, change: impl FnOnce(&mut Vec<IssueLine>) -> Result<R, BeadsError>) -> Result<R, BeadsError> {
        let lock_path = &self.lock_path;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)
            .map_err(io(lock_path))?;
        let _locked = FileLock::exclusive(&lock).map_err(io(lock_path))?;

        let mut issues = match self.read_lines() {
            Err(BeadsError::NoFile(_)) => Vec::new(),
            other => other?,
        };
        let result = change(&mut issues)?;
        for (line, obj) in issues.iter_mut() {
            if line.is_empty() {
                *line = serde_json::to_string(obj).map_err(|e| io(&self.path)(e.into()))?;
            }
        }
        issues.sort_by_key(|(_, obj)| text(obj, "id"));

        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
        for (line, _) in &issues {
            writeln!(tmp, "{line}").map_err(io(&self.path))?;
        }
        tmp.as_file().sync_all().map_err(io(&self.path))?;
        tmp.persist(&self.path).map_err(|e| io(&self.path)(e.error))?;
        Ok(result)
    }

    /// Applies `change` to one issue (and stamps `updated_at`).
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Map<String, Value>)) -> Result<Bead, BeadsError> {
        self.modify(|issues| Ok(bead_from_json(self.change_issue(issues, id, change)?)))
    }

    /// Applies `change` to each of `ids` in one locked rewrite of the file (a dispatcher round's
    /// claims: one write, not one per bead). Nothing changes if one of them is not there.
    pub fn update_many(&self, ids: &[String], change: impl Fn(&mut Map<String, Value>)) -> Result<(), BeadsError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.modify(|issues| {
            for id in ids {
                self.change_issue(issues, id, &change)?;
            }
            Ok(())
        })
    }

    /// Within [`BeadsFile::modify`]: applies `change` to issue `id`, stamps `updated_at` and marks
    /// its line to be written again.
    fn change_issue<'a>(
        &self,
        issues: &'a mut [IssueLine],
        id: &str,
        change: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<&'a Map<String, Value>, BeadsError> {
        let (line, obj) = issues
            .iter_mut()
            .find(|(_, o)| o.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| BeadsError::NotFound {
                id: id.to_string(),
                file: self.path.clone(),
            })?;
        change(obj);
        obj.insert("updated_at".into(), Value::String(now_rfc3339()));
        line.clear();
        Ok(obj)
    }

    /// The id prefix new beads get: `issue_prefix` from `.beads/config.yaml` when set, else the
    /// prefix most existing ids use, else the repository's directory name (as Beads does).
    pub fn prefix(&self) -> String {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if let Ok(config) = std::fs::read_to_string(dir.join("config.yaml")) {
            for line in config.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
                if let Some(value) = line
                    .strip_prefix("issue_prefix:")
                    .or_else(|| line.strip_prefix("issue-prefix:"))
                {
                    let value = value.trim().trim_matches(['"', '\'']);
                    if !value.is_empty() {
                        return value.to_string();
                    }
                }
            }
        }
        let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for obj in self.read_all().unwrap_or_default() {
            if let Some((prefix, _)) = text(&obj, "id").rsplit_once('-') {
                *counts.entry(prefix.to_string()).or_default() += 1;
            }
        }
        if let Some((prefix, _)) = counts.into_iter().max_by_key(|(_, n)| *n) {
            return prefix;
        }
        dir.parent()
            .and_then(Path::file_name)
            .map(|n| {
                n.to_string_lossy()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .filter(|n: &String| !n.is_empty())
            .unwrap_or_else(|| "bd".to_string())
    }

    /// Creates a bead with a Beads-style id (`<prefix>-<base36>`) and returns it.
    pub fn create(&self, new: &NewBead) -> Result<Bead, BeadsError> {
        let prefix = self.prefix();
        self.modify(|issues| {
            let taken: std::collections::BTreeSet<String> = issues.iter().map(|(_, o)| text(o, "id")).collect();
            let mut seed = id_seed();
            let mut id = String::new();
            if let Some(wanted) = &new.id {
                if taken.contains(wanted) {
                    return Err(BeadsError::Exists {
                        id: wanted.clone(),
                        file: self.path.clone(),
                    });
                }
                id = wanted.clone();
            }
            for n in 0..1000u32 {
                if !id.is_empty() {
                    break;
                }
                let len = 3 + (n / 50) as usize;
                id = format!("{prefix}-{}", base36(&mut seed, len));
                if !taken.contains(&id) {
                    break;
                }
            }
            let now = now_rfc3339();
            let mut obj = Map::new();
            obj.insert("id".into(), Value::String(id.clone()));
            obj.insert("title".into(), Value::String(new.title.clone()));
            if !new.description.is_empty() {
                obj.insert("description".into(), Value::String(new.description.clone()));
            }
            if !new.acceptance_criteria.is_empty() {
                obj.insert(
                    "acceptance_criteria".into(),
                    Value::String(new.acceptance_criteria.clone()),
                );
            }
            obj.insert("status".into(), Value::String("open".into()));
            obj.insert("priority".into(), Value::from(new.priority));
            obj.insert("issue_type".into(), Value::String(new.issue_type.clone()));
            obj.insert("created_at".into(), Value::String(now.clone()));
            obj.insert("created_by".into(), Value::String(new.created_by.clone()));
            obj.insert("updated_at".into(), Value::String(now.clone()));
            if !new.labels.is_empty() {
                obj.insert("labels".into(), Value::from(new.labels.clone()));
            }
            if !new.dependencies.is_empty() {
                let deps: Vec<Value> = new
                    .dependencies
                    .iter()
                    .map(|(target, kind)| dependency(&id, target, kind, &new.created_by, &now))
                    .collect();
                obj.insert("dependencies".into(), Value::Array(deps));
            }
            let bead = bead_from_json(&obj);
            issues.push((String::new(), obj));
            Ok(bead)
        })
    }

    /// Adds `id` depends-on `depends_on` (a `blocks`, `related`, `discovered-from`... link), once.
    pub fn add_dependency(&self, id: &str, depends_on: &str, kind: &str, by: &str) -> Result<(), BeadsError> {
        self.update(id, |obj| {
            let deps = obj.entry("dependencies").or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = deps {
                let known = list.iter().any(|d| {
                    d.get("depends_on_id").and_then(Value::as_str) == Some(depends_on)
                        && d.get("type").and_then(Value::as_str).unwrap_or("blocks") == kind
                });
                if !known {
                    list.push(dependency(id, depends_on, kind, by, &now_rfc3339()));
                }
            }
        })
        .map(|_| ())
    }

    /// Every issue as CHUM reasons about the DAG.
    pub fn items(&self) -> Result<Vec<chum_core::backlog::BacklogItem>, BeadsError> {
        Ok(self
            .read_all()?
            .iter()
            .map(chum_core::backlog::BacklogItem::from_json)
            .collect())
    }
}

/// A dependency record as Beads writes it.
fn dependency(id: &str, depends_on: &str, kind: &str, by: &str, now: &str) -> Value {
    serde_json::json!({"issue_id": id, "depends_on_id": depends_on, "type": kind, "created_at": now,
        "created_by": by, "metadata": "{}", "thread_id": ""})
}

/// A seed for new ids: the clock and the process, mixed (ids need to be unlikely to collide, not
/// unpredictable; collisions are checked anyway).
fn id_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

/// `len` base-36 characters from a xorshift generator.
fn base36(seed: &mut u64, len: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            DIGITS[(*seed % 36) as usize] as char
        })
        .collect()
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
    fn a_dolt_store_is_refused_with_what_to_set_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let beads = file(dir.path());
        // br's own metadata (shared/fixtures/beads-br): SQLite plus this JSONL, read as usual.
        std::fs::write(
            dir.path().join("metadata.json"),
            r#"{"database": "beads.db", "jsonl_export": "issues.jsonl"}"#,
        )
        .unwrap();
        assert!(beads.get("demo-i76").is_ok());
        // bd 0.50+: a Dolt database, by its metadata or its directory.
        std::fs::write(dir.path().join("metadata.json"), r#"{"database": "dolt"}"#).unwrap();
        let err = beads.get("demo-i76").unwrap_err();
        assert!(matches!(err, BeadsError::DoltStore(_)), "{err}");
        assert!(
            err.to_string()
                .contains("beads_backend = \"cli\" and beads_cli = \"bd\""),
            "{err}"
        );
        assert!(matches!(
            beads.update("demo-i76", |o| {
                o.insert("status".into(), Value::String("closed".into()));
            }),
            Err(BeadsError::DoltStore(_))
        ));
        assert_eq!(
            std::fs::read_to_string(beads.path()).unwrap(),
            FIXTURE,
            "nothing written"
        );
        std::fs::remove_file(dir.path().join("metadata.json")).unwrap();
        std::fs::create_dir(dir.path().join("dolt")).unwrap();
        assert!(matches!(beads.items(), Err(BeadsError::DoltStore(_))));
    }

    #[test]
    fn a_rounds_claims_are_one_write_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let beads = file(dir.path());
        let claim = |o: &mut Map<String, Value>| {
            o.insert("status".into(), Value::String("in_progress".into()));
        };
        let missing = beads.update_many(&["demo-i76".into(), "demo-zzz".into()], claim);
        assert!(matches!(missing, Err(BeadsError::NotFound { .. })), "{missing:?}");
        assert_eq!(
            std::fs::read_to_string(beads.path()).unwrap(),
            FIXTURE,
            "nothing written"
        );
        beads
            .update_many(&["demo-3kt".into(), "demo-i76".into()], claim)
            .unwrap();
        for id in ["demo-3kt", "demo-i76"] {
            assert_eq!(beads.get(id).unwrap().status, "in_progress", "{id}");
        }
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
