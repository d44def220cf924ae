//! One direction: the edge crates (`meters/`) depend only on other edge crates, `gridmesh-core`
//! and `gridmesh-testkit`, in normal, build and dev dependencies alike, so the agent and its
//! tools build and test without the central service. `gridmesh-testkit` (a process and broker
//! helper) stays generic: it depends on no gridmesh crate at all. Tests that need both sides
//! live in `gridmesh-e2e`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// What an edge crate may use from outside `meters/`.
const EDGE_MAY_USE: &[&str] = &["gridmesh-core", "gridmesh-testkit"];

/// The generic test helper crate.
const TESTKIT: &str = "gridmesh-testkit";

/// `cargo metadata` of the workspace, without resolving dependencies (no network, no lock).
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running {cargo} metadata: {e}"));
    assert!(out.status.success(), "{cargo} metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata answers JSON")
}

/// Every broken rule, one line each, naming the crate and the dependency.
fn violations(metadata: &Value) -> Vec<String> {
    let root = PathBuf::from(metadata["workspace_root"].as_str().expect("workspace_root"));
    let meters = root.join("meters");
    let packages = metadata["packages"].as_array().expect("packages");
    // Each workspace package's directory, by name.
    let dirs: HashMap<&str, &Path> = packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("a package name");
            let manifest = Path::new(p["manifest_path"].as_str().expect("a manifest path"));
            (name, manifest.parent().expect("a manifest in a directory"))
        })
        .collect();
    let mut found = Vec::new();
    for p in packages {
        let name = p["name"].as_str().expect("a package name");
        let edge = dirs[name].starts_with(&meters);
        for d in p["dependencies"].as_array().expect("dependencies") {
            let dep = d["name"].as_str().expect("a dependency name");
            let kind = d["kind"].as_str().unwrap_or("normal");
            let ours = dirs.get(dep);
            if name == TESTKIT && (ours.is_some() || dep.starts_with("gridmesh")) {
                found.push(format!(
                    "{name} depends ({kind}) on {dep}: the testkit must stay free of gridmesh crates"
                ));
            } else if edge
                && let Some(dir) = ours
                && !dir.starts_with(&meters)
                && !EDGE_MAY_USE.contains(&dep)
            {
                found.push(format!(
                    "{name} (meters/) depends ({kind}) on {dep} ({}): an edge crate may use only \
                     meters/ crates, {}; move a test that needs both into gridmesh-e2e",
                    dir.strip_prefix(&root).unwrap_or(dir).display(),
                    EDGE_MAY_USE.join(" and "),
                ));
            }
        }
    }
    found
}

#[test]
fn meters_depend_only_on_meters_the_core_and_the_testkit() {
    let metadata = metadata();
    let root = PathBuf::from(metadata["workspace_root"].as_str().expect("workspace_root"));
    let packages = metadata["packages"].as_array().expect("packages");
    let in_meters = packages
        .iter()
        .filter(|p| {
            Path::new(p["manifest_path"].as_str().unwrap_or_default()).starts_with(root.join("meters"))
        })
        .count();
    // Guards against a check that passes because it found nothing to check.
    assert!(in_meters >= 2, "found {in_meters} packages under meters/ in {}", root.display());
    assert!(packages.iter().any(|p| p["name"] == TESTKIT), "{TESTKIT} is a workspace member");
    let found = violations(&metadata);
    assert!(found.is_empty(), "dependencies against the direction edge → core:\n{}", found.join("\n"));
}

/// The check itself, on a made-up workspace: it catches a dev-dependency of an edge crate on a
/// central one and a gridmesh dependency of the testkit, and lets the allowed ones through.
#[test]
fn the_check_names_the_crate_and_the_dependency() {
    let dep = |name: &str, kind: Value| json!({ "name": name, "kind": kind });
    let package = |name: &str, dir: &str, deps: Vec<Value>| {
        let manifest_path = format!("/ws/{dir}/Cargo.toml");
        json!({ "name": name, "manifest_path": manifest_path, "dependencies": deps })
    };
    let metadata = json!({
        "workspace_root": "/ws",
        "packages": [
            package("gridmesh-core", "services/gridmesh-core", vec![dep("serde", Value::Null)]),
            package("gridmesh-db", "services/gridmesh-db", vec![dep("gridmesh-core", Value::Null)]),
            package("gridmesh-testkit", "services/gridmesh-testkit", vec![dep("gridmesh-core", json!("dev"))]),
            package("gridmesh-wire", "meters/gridmesh-wire", vec![dep("gridmesh-core", Value::Null)]),
            package("gridmesh-agent", "meters/gridmesh-agent", vec![
                dep("gridmesh-wire", Value::Null),
                dep("gridmesh-testkit", json!("dev")),
                dep("gridmesh-db", json!("dev")),
                dep("tokio", Value::Null),
            ]),
        ],
    });
    let found = violations(&metadata);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("gridmesh-testkit depends (dev) on gridmesh-core"), "{}", found[0]);
    assert!(
        found[1].starts_with("gridmesh-agent (meters/) depends (dev) on gridmesh-db (services/gridmesh-db)"),
        "{}",
        found[1]
    );
}
