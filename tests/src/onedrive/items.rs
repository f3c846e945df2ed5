//! Drives, folders and files, and their `driveItem` JSON (onedrive.md §2.3, §7.1).

use super::errors::fmt_time;
use crate::config::OneDriveFlavor;
use crate::store::{FileRecord, Service, StoredContent};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// What an item is.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A folder: children by lowercase name (names are case-insensitive).
    Folder(BTreeMap<String, String>),
    /// A file.
    File(StoredContent),
}

/// One item of a drive.
#[derive(Clone, Debug)]
pub struct Item {
    /// Item id.
    pub id: String,
    /// Name (the root's is `root`).
    pub name: String,
    /// Parent id; `None` for the root.
    pub parent: Option<String>,
    /// Folder or file.
    pub kind: Kind,
    /// Server creation time.
    pub created: SystemTime,
    /// Server modification time.
    pub modified: SystemTime,
    /// Client `fileSystemInfo` (created, modified), as sent.
    pub fs_info: Option<(Option<String>, Option<String>)>,
    /// Description (sent with the session).
    pub description: Option<String>,
    /// eTag version: bumped on any change.
    pub version: u64,
    /// cTag version: bumped on content changes.
    pub content_version: u64,
}

impl Item {
    /// The eTag, `"{ID},N"`.
    pub fn etag(&self) -> String {
        format!("\"{{{}}},{}\"", self.id, self.version)
    }

    /// The cTag, `"c:{ID},N"`.
    pub fn ctag(&self) -> String {
        format!("\"c:{{{}}},{}\"", self.id, self.content_version)
    }

    /// True for folders.
    pub fn is_folder(&self) -> bool {
        matches!(self.kind, Kind::Folder(_))
    }

    /// Size: the file's, or 0 for folders.
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::File(c) => c.size,
            Kind::Folder(_) => 0,
        }
    }
}

/// One drive.
#[derive(Clone, Debug)]
pub struct Drive {
    /// Drive id.
    pub id: String,
    /// Root item id.
    pub root: String,
    /// Items by id.
    pub items: HashMap<String, Item>,
}

/// Where a file goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Folder names from the root.
    pub parent: Vec<String>,
    /// File name.
    pub name: String,
}

impl Placement {
    /// Display path `/a/b/name`.
    pub fn display(&self) -> String {
        let mut s = String::new();
        for p in &self.parent {
            s.push('/');
            s.push_str(p);
        }
        s.push('/');
        s.push_str(&self.name);
        s
    }

    /// Case-insensitive key of the target.
    pub fn key(&self) -> String {
        self.display().to_lowercase()
    }
}

/// Why a tree operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// An intermediate path component is a file.
    NotAFolder,
    /// The name exists and conflict behaviour is `fail`.
    Exists,
    /// The target exists as a folder.
    IsFolder,
}

/// `@microsoft.graph.conflictBehavior`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// 409 when the name exists.
    Fail,
    /// Overwrite.
    Replace,
    /// Pick a free name (`name 1.ext`).
    Rename,
}

impl Conflict {
    /// Parses the wire value (rule 4: anything else is invalid).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fail" => Some(Conflict::Fail),
            "replace" => Some(Conflict::Replace),
            "rename" => Some(Conflict::Rename),
            _ => None,
        }
    }
}

/// Metadata of a file being committed.
#[derive(Clone, Debug, Default)]
pub struct NewFileMeta {
    /// Client `fileSystemInfo`.
    pub fs_info: Option<(Option<String>, Option<String>)>,
    /// Description.
    pub description: Option<String>,
}

impl Drive {
    /// A new drive with an empty root.
    pub fn new(id: String, root_id: String, now: SystemTime) -> Self {
        let root = Item {
            id: root_id.clone(),
            name: "root".into(),
            parent: None,
            kind: Kind::Folder(BTreeMap::new()),
            created: now,
            modified: now,
            fs_info: None,
            description: None,
            version: 1,
            content_version: 1,
        };
        let mut items = HashMap::new();
        items.insert(root_id.clone(), root);
        Self {
            id,
            root: root_id,
            items,
        }
    }

    /// Resolves an item id (`root` is an alias of the root).
    pub fn by_id(&self, id: &str) -> Option<&Item> {
        if id.eq_ignore_ascii_case("root") {
            return self.items.get(&self.root);
        }
        self.items.get(id)
    }

    fn child(&self, folder: &str, name: &str) -> Option<&Item> {
        match &self.items.get(folder)?.kind {
            Kind::Folder(children) => self.items.get(children.get(&name.to_lowercase())?),
            Kind::File(_) => None,
        }
    }

    /// Resolves `segs` below the item `from`.
    pub fn walk(&self, from: &str, segs: &[String]) -> Option<&Item> {
        let mut cur = self.by_id(from)?;
        for s in segs {
            cur = self.child(&cur.id, s)?;
        }
        Some(cur)
    }

    /// Resolves a path from the root.
    pub fn by_path(&self, segs: &[String]) -> Option<&Item> {
        self.walk(&self.root, segs)
    }

    /// Names from the root to `id` (empty for the root), or `None` when unknown.
    pub fn path_of(&self, id: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut cur = self.items.get(id)?;
        let mut guard = 0usize;
        while let Some(p) = &cur.parent {
            out.push(cur.name.clone());
            cur = self.items.get(p)?;
            guard += 1;
            if guard > 10_000 {
                return None;
            }
        }
        out.reverse();
        Some(out)
    }

    /// Total size of the files (quota use).
    pub fn used(&self) -> u64 {
        self.items
            .values()
            .map(Item::size)
            .fold(0u64, u64::saturating_add)
    }

    /// Creates the folders of `path` as needed; returns the id of the last one.
    pub fn ensure_folders(
        &mut self,
        path: &[String],
        now: SystemTime,
        mut new_id: impl FnMut() -> String,
    ) -> Result<String, TreeError> {
        let mut cur = self.root.clone();
        for seg in path {
            let existing = self.child(&cur, seg).map(|i| (i.id.clone(), i.is_folder()));
            cur = match existing {
                Some((id, true)) => id,
                Some((_, false)) => return Err(TreeError::NotAFolder),
                None => {
                    let id = new_id();
                    let item = Item {
                        id: id.clone(),
                        name: seg.clone(),
                        parent: Some(cur.clone()),
                        kind: Kind::Folder(BTreeMap::new()),
                        created: now,
                        modified: now,
                        fs_info: None,
                        description: None,
                        version: 1,
                        content_version: 1,
                    };
                    self.link(&cur, &id, seg);
                    self.items.insert(id.clone(), item);
                    id
                }
            };
        }
        Ok(cur)
    }

    fn link(&mut self, parent: &str, id: &str, name: &str) {
        if let Some(Item {
            kind: Kind::Folder(children),
            ..
        }) = self.items.get_mut(parent)
        {
            children.insert(name.to_lowercase(), id.to_string());
        }
    }

    /// Checks where a file with `placement` would go, without changing anything:
    /// `Ok(Some(id))` when it would replace the file `id`, `Ok(None)` when new.
    pub fn check_target(
        &self,
        placement: &Placement,
        conflict: Conflict,
    ) -> Result<Option<String>, TreeError> {
        let mut cur = self.root.clone();
        for seg in &placement.parent {
            match self.child(&cur, seg) {
                Some(i) if i.is_folder() => cur = i.id.clone(),
                Some(_) => return Err(TreeError::NotAFolder),
                None => return Ok(None),
            }
        }
        match self.child(&cur, &placement.name) {
            None => Ok(None),
            Some(i) => match conflict {
                Conflict::Fail => Err(TreeError::Exists),
                Conflict::Rename => Ok(None),
                Conflict::Replace if i.is_folder() => Err(TreeError::IsFolder),
                Conflict::Replace => Ok(Some(i.id.clone())),
            },
        }
    }

    /// Stores a file at `placement`. Returns the item id and whether it was created
    /// (`true`) or replaced an existing file (`false`).
    pub fn put_file(
        &mut self,
        placement: &Placement,
        conflict: Conflict,
        content: StoredContent,
        meta: NewFileMeta,
        now: SystemTime,
        mut new_id: impl FnMut() -> String,
    ) -> Result<(String, bool), TreeError> {
        self.check_target(placement, conflict)?;
        let parent = self.ensure_folders(&placement.parent, now, &mut new_id)?;
        let mut name = placement.name.clone();
        if let Some(existing) = self.child(&parent, &name) {
            match conflict {
                Conflict::Fail => return Err(TreeError::Exists),
                Conflict::Replace => {
                    let id = existing.id.clone();
                    if let Some(item) = self.items.get_mut(&id) {
                        if item.is_folder() {
                            return Err(TreeError::IsFolder);
                        }
                        item.kind = Kind::File(content);
                        item.modified = now;
                        item.version += 1;
                        item.content_version += 1;
                        if meta.fs_info.is_some() {
                            item.fs_info = meta.fs_info;
                        }
                        if meta.description.is_some() {
                            item.description = meta.description;
                        }
                    }
                    return Ok((id, false));
                }
                Conflict::Rename => name = self.free_name(&parent, &name),
            }
        }
        let id = new_id();
        let item = Item {
            id: id.clone(),
            name: name.clone(),
            parent: Some(parent.clone()),
            kind: Kind::File(content),
            created: now,
            modified: now,
            fs_info: meta.fs_info,
            description: meta.description,
            version: 1,
            content_version: 1,
        };
        self.link(&parent, &id, &name);
        self.items.insert(id.clone(), item);
        if let Some(p) = self.items.get_mut(&parent) {
            p.modified = now;
            p.version += 1;
        }
        Ok((id, true))
    }

    /// `name 1.ext`, `name 2.ext`, … : the first name free in `folder`.
    fn free_name(&self, folder: &str, name: &str) -> String {
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (name.get(..i).unwrap_or(name), name.get(i..).unwrap_or("")),
            _ => (name, ""),
        };
        let mut n = 1u64;
        loop {
            let cand = format!("{stem} {n}{ext}");
            if self.child(folder, &cand).is_none() {
                return cand;
            }
            n += 1;
        }
    }

    /// The finished files as [`FileRecord`]s.
    pub fn records(&self) -> Vec<FileRecord> {
        let mut out: Vec<FileRecord> = self
            .items
            .values()
            .filter_map(|i| match &i.kind {
                Kind::File(c) => Some(FileRecord {
                    service: Service::OneDrive,
                    drive: self.id.clone(),
                    path: format!("/{}", self.path_of(&i.id)?.join("/")),
                    id: i.id.clone(),
                    rev: i.etag(),
                    content: c.clone(),
                }),
                Kind::Folder(_) => None,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// The `driveItem` JSON of `id`.
    pub fn item_json(&self, id: &str, flavor: OneDriveFlavor) -> Option<Value> {
        let item = self.items.get(id)?;
        let mut m = Map::new();
        m.insert("id".into(), json!(item.id));
        m.insert("name".into(), json!(item.name));
        m.insert("size".into(), json!(item.size()));
        m.insert("eTag".into(), json!(item.etag()));
        m.insert("cTag".into(), json!(item.ctag()));
        m.insert("createdDateTime".into(), json!(fmt_time(item.created)));
        m.insert(
            "lastModifiedDateTime".into(),
            json!(fmt_time(item.modified)),
        );
        let (fc, fm) = item.fs_info.clone().unwrap_or((None, None));
        m.insert(
            "fileSystemInfo".into(),
            json!({
                "createdDateTime": fc.unwrap_or_else(|| fmt_time(item.created)),
                "lastModifiedDateTime": fm.unwrap_or_else(|| fmt_time(item.modified)),
            }),
        );
        if let Some(pid) = &item.parent {
            let mut path = String::from("/drive/root:");
            for seg in self.path_of(pid).unwrap_or_default() {
                path.push('/');
                path.push_str(&seg);
            }
            m.insert(
                "parentReference".into(),
                json!({
                    "driveId": self.id,
                    "driveType": drive_type(flavor),
                    "id": pid,
                    "path": path,
                }),
            );
        } else {
            m.insert("root".into(), json!({}));
        }
        if let Some(d) = &item.description {
            m.insert("description".into(), json!(d));
        }
        match &item.kind {
            Kind::Folder(children) => {
                m.insert("folder".into(), json!({ "childCount": children.len() }));
            }
            Kind::File(c) => {
                let mut hashes = Map::new();
                if let Some(q) = &c.quick_xor_hash {
                    hashes.insert("quickXorHash".into(), json!(q));
                }
                if flavor == OneDriveFlavor::Personal {
                    if let Some(s) = &c.sha256 {
                        hashes.insert("sha256Hash".into(), json!(s.to_uppercase()));
                    }
                }
                m.insert(
                    "file".into(),
                    json!({ "mimeType": mime_type(&item.name), "hashes": Value::Object(hashes) }),
                );
            }
        }
        Some(Value::Object(m))
    }
}

/// `business` or `personal`.
pub fn drive_type(flavor: OneDriveFlavor) -> &'static str {
    match flavor {
        OneDriveFlavor::Business => "business",
        OneDriveFlavor::Personal => "personal",
    }
}

/// MIME type from the file extension (a small table; `application/octet-stream`
/// otherwise).
pub fn mime_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "htm" | "html" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}
