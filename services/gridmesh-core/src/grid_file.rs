//! A grid described in a file: the transformers and feeders of an area as a tree, each with a
//! code from the utility's own systems (the feeder id in its GIS, say), a name and import and
//! export limits in kW. The same file imports (`gridmesh grid import`, `POST /v1/grid/import`)
//! and exports, as CSV or JSON.
//!
//! Everything here is IO-free: [`GridFile::from_csv`] / [`GridFile::from_json`] read a file,
//! [`plan`] checks it as a whole against the grid stored today and says what would change
//! (nodes are matched by code, so importing the same file again changes nothing), and
//! [`GridFile::to_csv`] / [`GridFile::to_json`] write one back.
//!
//! CSV: a header row `code,kind,parent,name,import_limit_kw,export_limit_kw`, one node a row,
//! `parent` empty for a root. JSON: `{"nodes": [{"code", "kind", "parent"?, "name",
//! "import_limit_kw", "export_limit_kw"}]}`. Limits are kW with at most three decimals (whole
//! watts).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{GridNode, GridNodeId, GridNodeKind, Watts};

/// The columns of the CSV form, in order.
pub const CSV_HEADER: [&str; 6] = ["code", "kind", "parent", "name", "import_limit_kw", "export_limit_kw"];

/// One node as a file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNode {
    /// The utility's code for the node; unique in the grid.
    pub code: String,
    /// Transformer or feeder.
    pub kind: GridNodeKind,
    /// The code of the node upstream; absent for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A human name.
    pub name: String,
    /// Highest net power the node may draw from its parent.
    #[serde(rename = "import_limit_kw", with = "kw")]
    pub import_limit: Watts,
    /// Highest net power the node may push up to its parent.
    #[serde(rename = "export_limit_kw", with = "kw")]
    pub export_limit: Watts,
}

/// A whole grid file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFile {
    /// The nodes, in any order.
    pub nodes: Vec<FileNode>,
}

/// One thing wrong with a file; a file with any of them is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridFileError {
    /// The file does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A field of a node is wrong (`at` names the node: its CSV line or its code).
    #[error("{at}: {field}: {problem}")]
    Field {
        /// Where.
        at: String,
        /// Which field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Two nodes have the same code.
    #[error("code {0:?} is used by more than one node")]
    DuplicateCode(String),
    /// A parent code names no node of the file or of the grid.
    #[error("{code}: parent {parent:?} is neither in the file nor in the grid")]
    UnknownParent {
        /// The node.
        code: String,
        /// Its parent code.
        parent: String,
    },
    /// Following parents from this node comes back to it.
    #[error("{0}: its parents lead back to it (the grid must be a tree)")]
    Cycle(String),
}

/// kW in files, whole watts inside.
mod kw {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Watts;

    pub fn serialize<S: Serializer>(w: &Watts, s: S) -> Result<S::Ok, S::Error> {
        if w.get() % 1_000 == 0 {
            s.serialize_i64(w.get() / 1_000)
        } else {
            s.serialize_f64(w.get() as f64 / 1_000.0)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Watts, D::Error> {
        let kw = f64::deserialize(d)?;
        super::watts_of_kw(kw).map_err(serde::de::Error::custom)
    }
}

/// Whole watts of a kW number: not negative, at most three decimals.
fn watts_of_kw(kw: f64) -> Result<Watts, String> {
    if !kw.is_finite() || kw < 0.0 {
        return Err(format!("must be a number of kW, 0 or more, got {kw}"));
    }
    let w = kw * 1_000.0;
    if (w - w.round()).abs() > 1e-6 || w > 1e15 {
        return Err(format!("kW with at most three decimals (whole watts), got {kw}"));
    }
    Ok(Watts(w.round() as i64))
}

/// kW text exactly: `400`, `12.5`, `0.001`.
fn parse_kw(text: &str) -> Result<Watts, String> {
    let t = text.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || digits(frac)) || frac.len() > 3 {
        return Err(format!("kW, 0 or more, with at most three decimals (like 400 or 12.5), got {t:?}"));
    }
    let w: i64 = whole.parse::<i64>().ok().and_then(|k| k.checked_mul(1_000)).ok_or("too large")?;
    let f: i64 = format!("{frac:0<3}").parse().unwrap_or(0);
    w.checked_add(f).map(Watts).ok_or_else(|| "too large".into())
}

/// kW text of whole watts, exactly (`12.5`, not `12.500`).
fn format_kw(w: Watts) -> String {
    let (whole, frac) = (w.get() / 1_000, w.get() % 1_000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{:03}", frac).trim_end_matches('0').to_owned()
    }
}

impl GridFile {
    /// Reads the CSV form. Every bad row is reported (with its line), not only the first.
    ///
    /// # Errors
    /// The problems found, each naming its line and field.
    pub fn from_csv(text: &str) -> Result<Self, Vec<GridFileError>> {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let header = reader.headers().map_err(|e| vec![GridFileError::Syntax(format!("CSV header: {e}"))])?;
        let header: Vec<String> = header.iter().map(str::to_owned).collect();
        if header != CSV_HEADER {
            return Err(vec![GridFileError::Syntax(format!(
                "the header must be {}, got {}",
                CSV_HEADER.join(","),
                header.join(",")
            ))]);
        }
        let mut nodes = Vec::new();
        let mut errors = Vec::new();
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    errors.push(GridFileError::Syntax(format!("CSV: {e}")));
                    continue;
                }
            };
            let line = record.position().map_or(0, csv::Position::line);
            let at = format!("line {line}");
            let field = |i: usize| record.get(i).unwrap_or_default();
            let mut bad = |f: &'static str, problem: String| {
                errors.push(GridFileError::Field { at: at.clone(), field: f, problem });
            };
            let kind = match field(1) {
                "transformer" => Some(GridNodeKind::Transformer),
                "feeder" => Some(GridNodeKind::Feeder),
                other => {
                    bad("kind", format!("must be transformer or feeder, got {other:?}"));
                    None
                }
            };
            let import_limit = parse_kw(field(4)).map_err(|p| bad("import_limit_kw", p)).ok();
            let export_limit = parse_kw(field(5)).map_err(|p| bad("export_limit_kw", p)).ok();
            if let (Some(kind), Some(import_limit), Some(export_limit)) = (kind, import_limit, export_limit) {
                nodes.push(FileNode {
                    code: field(0).to_owned(),
                    kind,
                    parent: Some(field(2).to_owned()).filter(|p| !p.is_empty()),
                    name: field(3).to_owned(),
                    import_limit,
                    export_limit,
                });
            }
        }
        if errors.is_empty() { Ok(Self { nodes }) } else { Err(errors) }
    }

    /// Reads the JSON form.
    ///
    /// # Errors
    /// The parser's message, with line and column.
    pub fn from_json(text: &str) -> Result<Self, Vec<GridFileError>> {
        serde_json::from_str(text).map_err(|e| vec![GridFileError::Syntax(format!("JSON: {e}"))])
    }

    /// The CSV form, parents before children, then by code.
    #[must_use]
    pub fn to_csv(&self) -> String {
        let mut out = CSV_HEADER.join(",");
        out.push('\n');
        let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
        for n in self.ordered() {
            let (import, export) = (format_kw(n.import_limit), format_kw(n.export_limit));
            let row = [
                n.code.as_str(),
                n.kind.as_str(),
                n.parent.as_deref().unwrap_or(""),
                &n.name,
                &import,
                &export,
            ];
            // Writing to memory cannot fail.
            let _ = writer.write_record(row);
        }
        let bytes = writer.into_inner().unwrap_or_default();
        let _ = write!(out, "{}", String::from_utf8_lossy(&bytes));
        out
    }

    /// The JSON form, in the same order as [`GridFile::to_csv`].
    #[must_use]
    pub fn to_json(&self) -> String {
        let ordered = GridFile { nodes: self.ordered().into_iter().cloned().collect() };
        serde_json::to_string_pretty(&ordered).unwrap_or_default() + "\n"
    }

    /// Parents before their children, siblings by code.
    fn ordered(&self) -> Vec<&FileNode> {
        let mut children: BTreeMap<Option<&str>, Vec<&FileNode>> = BTreeMap::new();
        let codes: BTreeSet<&str> = self.nodes.iter().map(|n| n.code.as_str()).collect();
        for n in &self.nodes {
            // A parent outside the file counts as a root here.
            let parent = n.parent.as_deref().filter(|p| codes.contains(p));
            children.entry(parent).or_default().push(n);
        }
        for list in children.values_mut() {
            list.sort_by(|a, b| a.code.cmp(&b.code));
        }
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<&FileNode> = children.get(&None).cloned().unwrap_or_default();
        stack.reverse();
        while let Some(n) = stack.pop() {
            out.push(n);
            if let Some(kids) = children.get(&Some(n.code.as_str())) {
                stack.extend(kids.iter().rev());
            }
        }
        // Nodes on a cycle have no root: kept at the end so nothing is lost.
        let placed: BTreeSet<*const FileNode> = out.iter().map(|n| std::ptr::from_ref(*n)).collect();
        let rest: Vec<&FileNode> =
            self.nodes.iter().filter(|n| !placed.contains(&std::ptr::from_ref(*n))).collect();
        out.extend(rest);
        out
    }
}

/// A node stored today, with its code if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNode {
    /// The node.
    pub node: GridNode,
    /// Its code.
    pub code: Option<String>,
}

impl StoredNode {
    /// The code a file uses for it: its own, or its id for a node created without one.
    #[must_use]
    pub fn file_code(&self) -> String {
        self.code.clone().unwrap_or_else(|| self.node.id.to_string())
    }
}

/// One change an import makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new node.
    Create {
        /// Its code.
        code: String,
        /// The node, with a new id.
        node: GridNode,
    },
    /// A node whose parent, name, kind or limits change.
    Update {
        /// Its code.
        code: String,
        /// As stored.
        before: GridNode,
        /// As the file has it.
        after: GridNode,
    },
}

impl Change {
    /// The node's code.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Change::Create { code, .. } | Change::Update { code, .. } => code,
        }
    }

    /// What changes, for people: `created` or each field with its old and new value
    /// (`import_limit_kw 150 -> 20`). Parents are named by id, as stored.
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        match self {
            Change::Create { .. } => vec!["created".to_owned()],
            Change::Update { before, after, .. } => {
                let mut out = Vec::new();
                let id = |p: Option<GridNodeId>| p.map_or_else(|| "none".to_owned(), |p| p.to_string());
                if before.parent != after.parent {
                    out.push(format!("parent {} -> {}", id(before.parent), id(after.parent)));
                }
                if before.kind != after.kind {
                    out.push(format!("kind {} -> {}", before.kind.as_str(), after.kind.as_str()));
                }
                if before.name != after.name {
                    out.push(format!("name {:?} -> {:?}", before.name, after.name));
                }
                if before.import_limit != after.import_limit {
                    out.push(format!(
                        "import_limit_kw {} -> {}",
                        format_kw(before.import_limit),
                        format_kw(after.import_limit)
                    ));
                }
                if before.export_limit != after.export_limit {
                    out.push(format!(
                        "export_limit_kw {} -> {}",
                        format_kw(before.export_limit),
                        format_kw(after.export_limit)
                    ));
                }
                out
            }
        }
    }
}

/// What an import would do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportPlan {
    /// The changes, parents before children.
    pub changes: Vec<Change>,
    /// Nodes of the file that match the grid already.
    pub unchanged: usize,
    /// Things worth a look that do not stop the import.
    pub warnings: Vec<String>,
}

/// Checks `file` as a whole against the grid stored today (`stored`, with each feeder's sum of
/// its homes' import connection limits in `homes_import`) and says what importing it changes.
/// Nodes match by code (a node stored without a code matches its id); `new_id` names new
/// nodes. Nodes of the grid that the file leaves out are left as they are.
///
/// # Errors
/// Every problem found: bad fields, duplicate codes, unknown parents, cycles.
pub fn plan(
    file: &GridFile,
    stored: &[StoredNode],
    homes_import: &HashMap<GridNodeId, i64>,
    mut new_id: impl FnMut() -> GridNodeId,
) -> Result<ImportPlan, Vec<GridFileError>> {
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for n in &file.nodes {
        let at = if n.code.is_empty() { n.name.clone() } else { n.code.clone() };
        if n.code.trim().is_empty() || n.code.chars().count() > 100 {
            errors.push(GridFileError::Field {
                at: at.clone(),
                field: "code",
                problem: "must be 1 to 100 characters".into(),
            });
        }
        if n.name.trim().is_empty() || n.name.chars().count() > 200 {
            errors.push(GridFileError::Field {
                at: at.clone(),
                field: "name",
                problem: "must be 1 to 200 characters".into(),
            });
        }
        if n.parent.as_deref() == Some(n.code.as_str()) {
            errors.push(GridFileError::Cycle(n.code.clone()));
        }
        if !seen.insert(n.code.as_str()) {
            errors.push(GridFileError::DuplicateCode(n.code.clone()));
        }
    }
    let by_code: HashMap<String, &StoredNode> = stored.iter().map(|s| (s.file_code(), s)).collect();
    let code_of_id: HashMap<GridNodeId, String> = stored.iter().map(|s| (s.node.id, s.file_code())).collect();
    let in_file: HashMap<&str, &FileNode> = file.nodes.iter().map(|n| (n.code.as_str(), n)).collect();
    // The tree after the import, by code: the file over the stored grid.
    let mut parent_of: HashMap<String, Option<String>> = stored
        .iter()
        .map(|s| (s.file_code(), s.node.parent.and_then(|p| code_of_id.get(&p).cloned())))
        .collect();
    for n in &file.nodes {
        if let Some(s) = by_code.get(&n.code)
            && s.node.kind == GridNodeKind::Feeder
            && n.kind != GridNodeKind::Feeder
            && homes_import.contains_key(&s.node.id)
        {
            errors.push(GridFileError::Field {
                at: n.code.clone(),
                field: "kind",
                problem: "homes are connected to this feeder; it stays a feeder".into(),
            });
        }
        parent_of.insert(n.code.clone(), n.parent.clone());
        if let Some(p) = &n.parent
            && !in_file.contains_key(p.as_str())
            && !by_code.contains_key(p)
        {
            errors.push(GridFileError::UnknownParent { code: n.code.clone(), parent: p.clone() });
        }
    }
    for n in &file.nodes {
        let mut at = n.parent.clone();
        let mut steps = 0;
        while let Some(p) = at {
            if p == n.code || steps > parent_of.len() {
                errors.push(GridFileError::Cycle(n.code.clone()));
                break;
            }
            at = parent_of.get(&p).cloned().flatten();
            steps += 1;
        }
    }
    if !errors.is_empty() {
        errors.dedup();
        return Err(errors);
    }
    // Ids: stored nodes keep theirs, new ones get one.
    let mut ids: HashMap<&str, GridNodeId> = HashMap::new();
    for n in &file.nodes {
        let id = by_code.get(&n.code).map_or_else(&mut new_id, |s| s.node.id);
        ids.insert(n.code.as_str(), id);
    }
    let id_of = |code: &str| ids.get(code).copied().or_else(|| by_code.get(code).map(|s| s.node.id));
    let mut out = ImportPlan::default();
    for n in file.ordered() {
        let node = GridNode {
            id: ids[n.code.as_str()],
            kind: n.kind,
            parent: n.parent.as_deref().and_then(id_of),
            name: n.name.trim().to_owned(),
            import_limit: n.import_limit,
            export_limit: n.export_limit,
        };
        if let Some(sum) = homes_import.get(&node.id).filter(|sum| **sum > node.import_limit.get()) {
            out.warnings.push(format!(
                "{}: import limit {} kW is below the sum of its homes' connection limits ({} kW)",
                n.code,
                format_kw(node.import_limit),
                format_kw(Watts(*sum))
            ));
        }
        match by_code.get(&n.code) {
            None => out.changes.push(Change::Create { code: n.code.clone(), node }),
            Some(s) if s.node == node => out.unchanged += 1,
            Some(s) => {
                out.changes.push(Change::Update { code: n.code.clone(), before: s.node.clone(), after: node })
            }
        }
    }
    Ok(out)
}

/// The stored grid as a file (every node; one without a code is written with its id).
#[must_use]
pub fn export(stored: &[StoredNode]) -> GridFile {
    let code_of_id: HashMap<GridNodeId, String> = stored.iter().map(|s| (s.node.id, s.file_code())).collect();
    GridFile {
        nodes: stored
            .iter()
            .map(|s| FileNode {
                code: s.file_code(),
                kind: s.node.kind,
                parent: s.node.parent.and_then(|p| code_of_id.get(&p).cloned()),
                name: s.node.name.clone(),
                import_limit: s.node.import_limit,
                export_limit: s.node.export_limit,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "code,kind,parent,name,import_limit_kw,export_limit_kw
T1,transformer,,\"Oak Lane substation, north\",400,250
F1,feeder,T1,Feeder 1,150,100.5
F2,feeder,T1,Feeder 2,0.001,0
";

    fn counter() -> impl FnMut() -> GridNodeId {
        let mut n = 0_u8;
        move || {
            n += 1;
            GridNodeId::from_bytes([n; 16])
        }
    }

    #[test]
    fn kw_are_exact_watts() {
        assert_eq!(parse_kw("400").unwrap(), Watts(400_000));
        assert_eq!(parse_kw("12.5").unwrap(), Watts(12_500));
        assert_eq!(parse_kw("0.001").unwrap(), Watts(1));
        assert!(parse_kw("-1").unwrap_err().contains("0 or more"));
        assert!(parse_kw("1.0001").unwrap_err().contains("three decimals"));
        assert!(parse_kw("lots").is_err());
        for w in [0, 1, 10, 12_500, 400_000, 123_456_789] {
            assert_eq!(parse_kw(&format_kw(Watts(w))).unwrap(), Watts(w));
        }
        assert_eq!(format_kw(Watts(100_500)), "100.5");
    }

    #[test]
    fn a_file_imports_into_an_empty_grid_and_again_changes_nothing() {
        let file = GridFile::from_csv(SAMPLE).unwrap();
        assert_eq!(file.nodes[0].name, "Oak Lane substation, north");
        let first = plan(&file, &[], &HashMap::new(), counter()).unwrap();
        assert_eq!(first.changes.len(), 3);
        let stored: Vec<StoredNode> = first
            .changes
            .iter()
            .map(|c| match c {
                Change::Create { code, node } => StoredNode { node: node.clone(), code: Some(code.clone()) },
                Change::Update { .. } => panic!("nothing to update in an empty grid"),
            })
            .collect();
        let again = plan(&file, &stored, &HashMap::new(), counter()).unwrap();
        assert_eq!((again.changes.len(), again.unchanged), (0, 3));
        assert_eq!(export(&stored).to_csv(), SAMPLE);
        // A changed limit is one update, and a feeder below its homes warns.
        let mut changed = file.clone();
        changed.nodes[1].import_limit = Watts(20_000);
        let f1 = stored[1].node.id;
        let p = plan(&changed, &stored, &HashMap::from([(f1, 34_000)]), counter()).unwrap();
        assert!(matches!(&p.changes[..], [Change::Update { code, .. }] if code == "F1"), "{p:?}");
        assert_eq!(p.changes[0].describe(), ["import_limit_kw 150 -> 20"]);
        assert!(
            p.warnings[0]
                .contains("F1: import limit 20 kW is below the sum of its homes' connection limits (34 kW)")
        );
    }

    #[test]
    fn a_bad_file_is_refused_whole_with_every_problem_named() {
        let bad = "code,kind,parent,name,import_limit_kw,export_limit_kw
T1,transformer,,T,400,250
T1,transformer,,T again,400,250
F1,feeder,T9,F,-5,1
F2,substation,T1,F,1,1
";
        let errors = GridFile::from_csv(bad).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|e| e.contains("line 4: import_limit_kw")), "{text:?}");
        assert!(text.iter().any(|e| e.contains("line 5: kind: must be transformer or feeder")), "{text:?}");
        let file = GridFile::from_csv(&bad.replace(",-5,", ",5,").replace("substation", "feeder")).unwrap();
        let errors = plan(&file, &[], &HashMap::new(), counter()).unwrap_err();
        assert!(errors.contains(&GridFileError::DuplicateCode("T1".into())), "{errors:?}");
        assert!(errors.contains(&GridFileError::UnknownParent { code: "F1".into(), parent: "T9".into() }));
        let cyclic = GridFile::from_json(
            r#"{"nodes":[{"code":"A","kind":"transformer","parent":"B","name":"a","import_limit_kw":1,"export_limit_kw":1},
                         {"code":"B","kind":"transformer","parent":"A","name":"b","import_limit_kw":1,"export_limit_kw":1}]}"#,
        )
        .unwrap();
        let errors = plan(&cyclic, &[], &HashMap::new(), counter()).unwrap_err();
        assert!(errors.contains(&GridFileError::Cycle("A".into())), "{errors:?}");
        assert!(
            GridFile::from_csv("code,kind\nA,feeder\n").unwrap_err()[0]
                .to_string()
                .contains("the header must be")
        );
        assert!(
            GridFile::from_json(r#"{"nodes":[{"code":"A"}]}"#).unwrap_err()[0].to_string().contains("JSON")
        );
    }

    /// A random tree: node `i` hangs off an earlier node or is a root.
    fn tree() -> impl Strategy<Value = GridFile> {
        prop::collection::vec(
            (any::<Option<prop::sample::Index>>(), any::<bool>(), 0_i64..10_000_000, 0_i64..10_000_000),
            1..25,
        )
        .prop_map(|spec| {
            let nodes = spec
                .iter()
                .enumerate()
                .map(|(i, (parent, feeder, import, export))| FileNode {
                    code: format!("N{i:02}"),
                    kind: if *feeder { GridNodeKind::Feeder } else { GridNodeKind::Transformer },
                    parent: parent.filter(|_| i > 0).map(|p| format!("N{:02}", p.index(i))),
                    name: format!("node, \"{i}\""),
                    import_limit: Watts(*import),
                    export_limit: Watts(*export),
                })
                .collect();
            GridFile { nodes }
        })
    }

    proptest! {
        #[test]
        fn valid_trees_import_and_export_back_to_the_same_file(file in tree()) {
            let first = plan(&file, &[], &HashMap::new(), counter()).unwrap();
            let stored: Vec<StoredNode> = first.changes.iter().filter_map(|c| match c {
                Change::Create { code, node } => Some(StoredNode { node: node.clone(), code: Some(code.clone()) }),
                Change::Update { .. } => None,
            }).collect();
            prop_assert_eq!(stored.len(), file.nodes.len());
            let exported = export(&stored);
            prop_assert_eq!(exported.to_csv(), file.to_csv());
            prop_assert_eq!(GridFile::from_csv(&file.to_csv()).unwrap().to_csv(), file.to_csv());
            prop_assert_eq!(GridFile::from_json(&file.to_json()).unwrap().to_json(), file.to_json());
            let again = plan(&exported, &stored, &HashMap::new(), counter()).unwrap();
            prop_assert_eq!((again.changes.len(), again.unchanged), (0, file.nodes.len()));
        }

        #[test]
        fn a_duplicated_code_or_a_parent_loop_is_refused(file in tree(), pick in any::<prop::sample::Index>()) {
            let mut dup = file.clone();
            let i = pick.index(dup.nodes.len());
            dup.nodes.push(dup.nodes[i].clone());
            prop_assert!(plan(&dup, &[], &HashMap::new(), counter()).is_err());
            let mut looped = file;
            let root = looped.nodes[0].code.clone();
            let last = looped.nodes.len() - 1;
            // The first node (a root) under the last one: a loop when the last descends from it,
            // otherwise still a tree; either way the verdict matches a walk of the parents.
            looped.nodes[0].parent = Some(looped.nodes[last].code.clone());
            let descends = {
                let mut at = Some(looped.nodes[last].code.clone());
                let mut found = false;
                for _ in 0..=looped.nodes.len() {
                    match at {
                        Some(c) if c == root => { found = true; break; }
                        Some(c) => at = looped.nodes.iter().find(|n| n.code == c).and_then(|n| n.parent.clone()),
                        None => break,
                    }
                }
                found
            };
            prop_assert_eq!(plan(&looped, &[], &HashMap::new(), counter()).is_err(), descends);
        }
    }
}
