//! Landed migrations are never edited: databases in the field have applied them, and sqlx
//! refuses to start when the checksum it recorded differs from the file's. This compares every
//! migration embedded in [`gridmesh_db::MIGRATOR`] against `migrations/checksums.txt`, the
//! append-only list of what has landed (`scripts/check-migrations` keeps that list append-only).

use std::collections::BTreeMap;

const CHECKSUMS: &str = include_str!("../../../migrations/checksums.txt");

/// One landed migration: its SHA-384 in hex and its file name.
struct Landed<'a> {
    checksum: &'a str,
    file: &'a str,
}

fn landed() -> BTreeMap<i64, Landed<'static>> {
    let mut landed = BTreeMap::new();
    for (n, line) in CHECKSUMS.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [version, checksum, file] = fields[..] else {
            panic!("migrations/checksums.txt line {}: expected `<version> <sha384 hex> <file>`", n + 1);
        };
        let version: i64 = version
            .parse()
            .unwrap_or_else(|_| panic!("migrations/checksums.txt line {}: bad version {version:?}", n + 1));
        let previous = landed.insert(version, Landed { checksum, file });
        assert!(previous.is_none(), "migrations/checksums.txt line {}: version {version} twice", n + 1);
    }
    landed
}

#[test]
fn landed_migrations_are_unchanged_and_listed() {
    let mut landed = landed();
    let mut problems = Vec::new();
    for migration in gridmesh_db::MIGRATOR.iter() {
        // sqlx keeps the description with `_` turned into spaces; our file names have no spaces.
        let file = format!("{}_{}.sql", migration.version, migration.description.replace(' ', "_"));
        let checksum = hex::encode(&migration.checksum);
        match landed.remove(&migration.version) {
            None => problems.push(format!(
                "migrations/{file} is not listed in migrations/checksums.txt; once it is final, \
                 append this line:\n    {} {checksum} {file}",
                migration.version
            )),
            Some(listed) if listed.checksum != checksum => problems.push(format!(
                "migrations/{file} changed after it landed (its SHA-384 is not the one in \
                 migrations/checksums.txt). Landed migrations are never edited: revert the change \
                 and add a new migration that makes it instead."
            )),
            Some(listed) if listed.file != file => problems.push(format!(
                "migrations/{} was renamed to {file} after it landed. Landed migrations are never \
                 edited: keep the name it landed with.",
                listed.file
            )),
            Some(_) => {}
        }
    }
    for listed in landed.values() {
        problems.push(format!(
            "migrations/{} is listed in migrations/checksums.txt but gone. Landed migrations are \
             never removed: restore it and add a new migration that undoes it instead.",
            listed.file
        ));
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}
