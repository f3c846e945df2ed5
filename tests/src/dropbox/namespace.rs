//! The account's namespace: files and folders, case-insensitive paths, WriteMode
//! semantics, autorename, conflicts and quota (dropbox.md §5; §12 rules 19, 49-56, 58).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::args::{CommitInfo, PropertyGroup, WriteMode};
use super::errors::{Conflict, PropErr, WriteErr};
use crate::store::{FileRecord, Service, StoredContent};

/// A stored file.
#[derive(Debug, Clone)]
pub(crate) struct FileEntry {
    pub display: String,
    pub id: String,
    pub rev: String,
    pub content: StoredContent,
    pub client_modified: String,
    pub server_modified: String,
}

impl FileEntry {
    /// `FileMetadata` fields, in wire order (rule 56).
    pub(crate) fn metadata_fields(&self) -> Vec<(String, Value)> {
        let mut v = vec![
            (
                "name".to_string(),
                Value::String(last_component(&self.display)),
            ),
            (
                "path_lower".to_string(),
                Value::String(self.display.to_lowercase()),
            ),
            (
                "path_display".to_string(),
                Value::String(self.display.clone()),
            ),
            ("id".to_string(), Value::String(self.id.clone())),
            (
                "client_modified".to_string(),
                Value::String(self.client_modified.clone()),
            ),
            (
                "server_modified".to_string(),
                Value::String(self.server_modified.clone()),
            ),
            ("rev".to_string(), Value::String(self.rev.clone())),
            ("size".to_string(), Value::from(self.content.size)),
            ("is_downloadable".to_string(), Value::Bool(true)),
        ];
        if let Some(h) = &self.content.content_hash {
            v.push(("content_hash".to_string(), Value::String(h.clone())));
        }
        v
    }

    /// `FileMetadata` as a plain struct (no `.tag`), the result of `finish`.
    pub(crate) fn metadata(&self) -> Value {
        Value::Object(self.metadata_fields().into_iter().collect())
    }
}

#[derive(Debug, Clone)]
enum Node {
    File(FileEntry),
    Folder { display: String, id: String },
}

fn last_component(p: &str) -> String {
    p.rsplit('/').next().unwrap_or("").to_string()
}

/// Splits `name.ext` for autorename: `("document", ".txt")`; a leading dot is part of the
/// stem (`.bashrc` has no extension).
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// Outcome of a successful commit.
#[derive(Debug, Clone)]
pub(crate) struct Committed {
    pub entry: FileEntry,
}

/// Files and folders of the account.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    nodes: BTreeMap<String, Node>,
    ids: HashMap<String, String>,
    next_rev: u64,
    next_id: u64,
    used: u64,
    templates: HashMap<String, Vec<String>>,
}

/// The id of the account's home namespace (for `ns:` paths).
pub(crate) const HOME_NS: &str = "3141592653";

impl Namespace {
    fn fresh_rev(&mut self) -> String {
        self.next_rev += 1;
        format!("{:012x}", 0x0150_0000_0000u64 + self.next_rev)
    }

    fn id_for(&mut self, lower: &str) -> String {
        if let Some(id) = self.ids.get(lower) {
            return id.clone();
        }
        self.next_id += 1;
        let id = format!("id:emuAAAAAAAAA{:06}", self.next_id);
        self.ids.insert(lower.to_string(), id.clone());
        id
    }

    /// Resolves a `WritePathOrId` to a display path (rule 19 second half, `ns:`, `id:`).
    pub(crate) fn resolve(&self, p: &str) -> Result<String, WriteErr> {
        let display = if let Some(rest) = p.strip_prefix("ns:") {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (ns, tail) = rest.split_at(digits);
            if ns != HOME_NS {
                return Err(WriteErr::NoWritePermission);
            }
            tail.to_string()
        } else if let Some(rest) = p.strip_prefix("id:") {
            let (id, tail) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let want = format!("id:{id}");
            let base = self
                .nodes
                .values()
                .find_map(|n| match n {
                    Node::File(f) if f.id == want => Some(f.display.clone()),
                    Node::Folder { display, id } if *id == want => Some(display.clone()),
                    _ => None,
                })
                .ok_or(WriteErr::MalformedPath)?;
            format!("{base}{tail}")
        } else {
            p.to_string()
        };
        let Some(body) = display.strip_prefix('/') else {
            return Err(WriteErr::MalformedPath);
        };
        if body.is_empty()
            || body
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(WriteErr::MalformedPath);
        }
        Ok(display)
    }

    /// Uses the stored casing of existing ancestor folders (the last component keeps the
    /// casing the client gave).
    fn canonical(&self, display: &str) -> String {
        let mut out = String::new();
        let comps: Vec<&str> = display.split('/').skip(1).collect();
        for (i, c) in comps.iter().enumerate() {
            let cand = format!("{out}/{c}");
            out = match self.nodes.get(&cand.to_lowercase()) {
                Some(Node::Folder { display, .. }) if i + 1 < comps.len() => display.clone(),
                _ => cand,
            };
        }
        out
    }

    /// Proper ancestors of a display path: `/a/b/c` → `/a`, `/a/b`.
    fn ancestors(display: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, c) in display.char_indices().skip(1) {
            if c == '/' {
                out.push(display[..i].to_string());
            }
        }
        out
    }

    fn ensure_folders(&mut self, display: &str) {
        for a in Self::ancestors(display) {
            let lower = a.to_lowercase();
            if !self.nodes.contains_key(&lower) {
                let id = self.id_for(&lower);
                self.nodes.insert(lower, Node::Folder { display: a, id });
            }
        }
    }

    /// Creates a folder (and its ancestors). Existing folders are kept.
    pub(crate) fn seed_folder(&mut self, display: &str) -> Result<(), WriteErr> {
        let display = self.resolve(display)?;
        self.check_ancestors(&display)?;
        let lower = display.to_lowercase();
        if matches!(self.nodes.get(&lower), Some(Node::File(_))) {
            return Err(WriteErr::Conflict(Conflict::File));
        }
        self.ensure_folders(&display);
        if !self.nodes.contains_key(&lower) {
            let id = self.id_for(&lower);
            self.nodes.insert(lower, Node::Folder { display, id });
        }
        Ok(())
    }

    /// Stores a file directly (overwriting), for seeding.
    pub(crate) fn seed_file(
        &mut self,
        display: &str,
        content: StoredContent,
        now: &str,
    ) -> Result<FileEntry, WriteErr> {
        let commit = CommitInfo {
            path: display.to_string(),
            mode: WriteMode::Overwrite,
            autorename: false,
            client_modified: None,
            property_groups: None,
            strict_conflict: false,
        };
        self.commit(&commit, content, now, None).map(|c| c.entry)
    }

    fn check_ancestors(&self, display: &str) -> Result<(), WriteErr> {
        for a in Self::ancestors(display) {
            if matches!(self.nodes.get(&a.to_lowercase()), Some(Node::File(_))) {
                return Err(WriteErr::Conflict(Conflict::FileAncestor));
            }
        }
        Ok(())
    }

    fn free(&self, display: &str) -> bool {
        !self.nodes.contains_key(&display.to_lowercase())
    }

    /// The first free autorename candidate: `name (2).ext`, `name (3).ext`, … or, for an
    /// `update` conflict, `name (conflicted copy).ext`, `name (conflicted copy 2).ext`, …
    fn autorename(&self, display: &str, conflicted_copy: bool) -> String {
        let (parent, name) = match display.rfind('/') {
            Some(i) => (&display[..i], &display[i + 1..]),
            None => ("", display),
        };
        let (stem, ext) = split_ext(name);
        for n in 1u64.. {
            let label = match (conflicted_copy, n) {
                (true, 1) => "conflicted copy".to_string(),
                (true, n) => format!("conflicted copy {n}"),
                (false, 1) => continue,
                (false, n) => n.to_string(),
            };
            let cand = format!("{parent}/{stem} ({label}){ext}");
            if self.free(&cand) {
                return cand;
            }
        }
        // Unreachable in practice: the namespace is finite.
        format!("{parent}/{stem} (conflicted copy){ext}")
    }

    /// Commits `content` per `commit` (rules 50-55).
    pub(crate) fn commit(
        &mut self,
        commit: &CommitInfo,
        content: StoredContent,
        now: &str,
        quota: Option<u64>,
    ) -> Result<Committed, WriteErr> {
        let display = self.resolve(&commit.path)?;
        self.check_ancestors(&display)?;
        let display = self.canonical(&display);
        let lower = display.to_lowercase();
        let mut target = display.clone();
        let mut conflict: Option<Conflict> = None;
        match self.nodes.get(&lower) {
            Some(Node::Folder { .. }) => conflict = Some(Conflict::Folder),
            Some(Node::File(existing)) => {
                if existing.content.same_content(&content) && !commit.strict_conflict {
                    // Identical content: nothing written, same rev (rule 51).
                    return Ok(Committed {
                        entry: existing.clone(),
                    });
                }
                match &commit.mode {
                    WriteMode::Add => conflict = Some(Conflict::File),
                    WriteMode::Overwrite => {}
                    WriteMode::Update(rev) => {
                        if *rev != existing.rev {
                            conflict = Some(Conflict::File);
                        }
                    }
                }
            }
            None => {
                if matches!(commit.mode, WriteMode::Update(_)) && commit.strict_conflict {
                    conflict = Some(Conflict::File);
                }
            }
        }
        if let Some(c) = conflict {
            if !commit.autorename {
                return Err(WriteErr::Conflict(c));
            }
            target = self.autorename(&display, matches!(commit.mode, WriteMode::Update(_)));
        }
        let target_lower = target.to_lowercase();
        let replaced = match self.nodes.get(&target_lower) {
            Some(Node::File(f)) => f.content.size,
            _ => 0,
        };
        if let Some(q) = quota {
            let after = self
                .used
                .saturating_sub(replaced)
                .saturating_add(content.size);
            if after > q {
                return Err(WriteErr::InsufficientSpace);
            }
        }
        self.ensure_folders(&target);
        let rev = self.fresh_rev();
        let id = self.id_for(&target_lower);
        let entry = FileEntry {
            display: target,
            id,
            rev,
            client_modified: commit
                .client_modified
                .clone()
                .unwrap_or_else(|| now.to_string()),
            server_modified: now.to_string(),
            content,
        };
        self.used = self.used.saturating_sub(replaced) + entry.content.size;
        self.nodes.insert(target_lower, Node::File(entry.clone()));
        Ok(Committed { entry })
    }

    /// Registers a property template (`ptid:…`) with its field names (rule 58).
    pub(crate) fn add_template(&mut self, id: &str, fields: &[&str]) {
        self.templates.insert(
            id.to_string(),
            fields.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// Validates `property_groups` against the known templates (rule 58).
    pub(crate) fn check_properties(&self, groups: &[PropertyGroup]) -> Option<PropErr> {
        let mut seen = std::collections::HashSet::new();
        for g in groups {
            if !seen.insert(g.template_id.as_str()) {
                return Some(PropErr::DuplicatePropertyGroups);
            }
            let Some(names) = self.templates.get(&g.template_id) else {
                return Some(PropErr::TemplateNotFound(g.template_id.clone()));
            };
            for (name, value) in &g.fields {
                if name.len() > 256 || value.len() > 1024 {
                    return Some(PropErr::PropertyFieldTooLarge);
                }
                if !names.contains(name) {
                    return Some(PropErr::DoesNotFitTemplate);
                }
            }
        }
        None
    }

    /// Metadata union of a path (`get_metadata`): `{".tag":"file",…}` or folder.
    pub(crate) fn lookup(&self, path: &str) -> Option<Value> {
        let display = self.resolve(path).ok()?;
        match self.nodes.get(&display.to_lowercase())? {
            Node::File(f) => Some(super::errors::tagged("file", f.metadata_fields())),
            Node::Folder { display, id } => Some(super::errors::tagged(
                "folder",
                [
                    ("name".to_string(), Value::String(last_component(display))),
                    (
                        "path_lower".to_string(),
                        Value::String(display.to_lowercase()),
                    ),
                    ("path_display".to_string(), Value::String(display.clone())),
                    ("id".to_string(), Value::String(id.clone())),
                ],
            )),
        }
    }

    /// Every stored file as a [`FileRecord`].
    pub(crate) fn records(&self) -> Vec<FileRecord> {
        self.nodes
            .values()
            .filter_map(|n| match n {
                Node::File(f) => Some(FileRecord {
                    service: Service::Dropbox,
                    drive: "home".to_string(),
                    path: f.display.clone(),
                    id: f.id.clone(),
                    rev: f.rev.clone(),
                    content: f.content.clone(),
                }),
                Node::Folder { .. } => None,
            })
            .collect()
    }

    /// Bytes used by stored files.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }
}
