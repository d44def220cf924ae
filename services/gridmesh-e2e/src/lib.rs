//! Tests of the edge (`meters/`) and the central service together live in this crate's `tests/`,
//! so that no edge crate depends on a central one, not even for its tests, and no central crate
//! on the agent (`tests/dependency_direction.rs` checks the first). Their shared fixtures are in
//! `gridmesh-fixtures`.
