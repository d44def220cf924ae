//! The distribution grid as a tree of transformers and feeders, with sites at the leaves.
//!
//! The optimizer limits power per node, the market prices transfers between zones along
//! [`Topology::site_path`], and utilities address requests to a node. A [`Topology`] can only be
//! built from a consistent description: every parent exists, there are no cycles, limits are
//! not negative and every site hangs off a feeder.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{GridNodeId, SiteId, Watts};

/// What a grid node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GridNodeKind {
    /// A transformer (substation or distribution transformer).
    Transformer,
    /// A feeder (a line or cable that sites connect to).
    Feeder,
}

impl GridNodeKind {
    /// The lowercase name used in the database and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            GridNodeKind::Transformer => "transformer",
            GridNodeKind::Feeder => "feeder",
        }
    }
}

/// A transformer or feeder with the power it may carry in each direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridNode {
    /// The node's id.
    pub id: GridNodeId,
    /// Transformer or feeder.
    pub kind: GridNodeKind,
    /// The node upstream (towards the substation); `None` for a root.
    pub parent: Option<GridNodeId>,
    /// A human name ("Feeder 7, Oak Lane").
    pub name: String,
    /// Highest net power the node may draw from its parent.
    pub import_limit: Watts,
    /// Highest net power the node may push up to its parent (a positive number).
    pub export_limit: Watts,
}

/// A node's limits for a while (a seasonal limit, a temporary outage limit), replacing its own
/// import limit, export limit or both from `from` until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitWindow {
    /// The node.
    pub node: GridNodeId,
    /// Start (inclusive).
    pub from: crate::Timestamp,
    /// End (exclusive).
    pub until: crate::Timestamp,
    /// The import limit meanwhile; `None` keeps the node's own.
    pub import_limit: Option<Watts>,
    /// The export limit meanwhile; `None` keeps the node's own.
    pub export_limit: Option<Watts>,
}

impl LimitWindow {
    /// Whether it is in force at `at`.
    #[must_use]
    pub fn covers(&self, at: crate::Timestamp) -> bool {
        self.from <= at && at < self.until
    }
}

/// Why a topology description was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopologyError {
    /// Two nodes share an id.
    #[error("grid node {0} appears twice")]
    DuplicateNode(GridNodeId),
    /// A node names a parent that is not in the description.
    #[error("grid node {node} names unknown parent {parent}")]
    UnknownParent {
        /// The child.
        node: GridNodeId,
        /// The missing parent.
        parent: GridNodeId,
    },
    /// Following parents from this node comes back to it.
    #[error("grid node {0} is part of a cycle; the grid must be a tree")]
    Cycle(GridNodeId),
    /// A limit is negative.
    #[error("grid node {node}: {field} must not be negative, got {value}")]
    NegativeLimit {
        /// The node.
        node: GridNodeId,
        /// `import_limit` or `export_limit`.
        field: &'static str,
        /// The value given.
        value: Watts,
    },
    /// Two sites share an id.
    #[error("site {0} appears twice")]
    DuplicateSite(SiteId),
    /// A site hangs off a node that is not in the description.
    #[error("site {site} is on unknown feeder {node}")]
    UnknownFeeder {
        /// The site.
        site: SiteId,
        /// The missing node.
        node: GridNodeId,
    },
    /// A site hangs off a transformer rather than a feeder.
    #[error("site {site} is attached to {node}, which is a transformer; sites connect to feeders")]
    NotAFeeder {
        /// The site.
        site: SiteId,
        /// The transformer.
        node: GridNodeId,
    },
}

/// A validated grid tree (or forest) with sites attached to feeders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    nodes: BTreeMap<GridNodeId, GridNode>,
    children: BTreeMap<GridNodeId, Vec<GridNodeId>>,
    site_feeder: BTreeMap<SiteId, GridNodeId>,
    sites_on: BTreeMap<GridNodeId, Vec<SiteId>>,
}

impl Topology {
    /// Validates and indexes the nodes and the `(site, feeder)` attachments.
    ///
    /// # Errors
    /// The first inconsistency found, naming the node or site.
    pub fn new(
        nodes: impl IntoIterator<Item = GridNode>,
        sites: impl IntoIterator<Item = (SiteId, GridNodeId)>,
    ) -> Result<Self, TopologyError> {
        let mut by_id = BTreeMap::new();
        for node in nodes {
            for (field, value) in [("import_limit", node.import_limit), ("export_limit", node.export_limit)] {
                if value.is_negative() {
                    return Err(TopologyError::NegativeLimit { node: node.id, field, value });
                }
            }
            let id = node.id;
            if by_id.insert(id, node).is_some() {
                return Err(TopologyError::DuplicateNode(id));
            }
        }
        let mut children: BTreeMap<GridNodeId, Vec<GridNodeId>> = BTreeMap::new();
        for node in by_id.values() {
            if let Some(parent) = node.parent {
                if !by_id.contains_key(&parent) {
                    return Err(TopologyError::UnknownParent { node: node.id, parent });
                }
                children.entry(parent).or_default().push(node.id);
            }
        }
        // A walk up from any node must reach a root within `len` steps, or it loops.
        for start in by_id.keys() {
            let mut at = *start;
            for _ in 0..=by_id.len() {
                match by_id.get(&at).and_then(|n| n.parent) {
                    Some(parent) if parent == *start => return Err(TopologyError::Cycle(*start)),
                    Some(parent) => at = parent,
                    None => break,
                }
            }
            if by_id.get(&at).and_then(|n| n.parent).is_some() {
                return Err(TopologyError::Cycle(*start));
            }
        }
        let mut site_feeder = BTreeMap::new();
        let mut sites_on: BTreeMap<GridNodeId, Vec<SiteId>> = BTreeMap::new();
        for (site, node) in sites {
            match by_id.get(&node) {
                None => return Err(TopologyError::UnknownFeeder { site, node }),
                Some(n) if n.kind != GridNodeKind::Feeder => {
                    return Err(TopologyError::NotAFeeder { site, node });
                }
                Some(_) => {}
            }
            if site_feeder.insert(site, node).is_some() {
                return Err(TopologyError::DuplicateSite(site));
            }
            sites_on.entry(node).or_default().push(site);
        }
        for list in sites_on.values_mut() {
            list.sort_unstable();
        }
        Ok(Self { nodes: by_id, children, site_feeder, sites_on })
    }

    /// The node with this id.
    #[must_use]
    pub fn node(&self, id: GridNodeId) -> Option<&GridNode> {
        self.nodes.get(&id)
    }

    /// All nodes, ordered by id.
    pub fn nodes(&self) -> impl Iterator<Item = &GridNode> {
        self.nodes.values()
    }

    /// Nodes without a parent, ordered by id.
    pub fn roots(&self) -> impl Iterator<Item = &GridNode> {
        self.nodes.values().filter(|n| n.parent.is_none())
    }

    /// Direct children of a node, ordered by id.
    #[must_use]
    pub fn children(&self, id: GridNodeId) -> &[GridNodeId] {
        self.children.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Sites attached directly to a feeder, ordered by id.
    #[must_use]
    pub fn sites_on(&self, id: GridNodeId) -> &[SiteId] {
        self.sites_on.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The same tree with the limits in force at `at`: each node's own, replaced by a window
    /// covering `at` (the one starting last, when several do).
    #[must_use]
    pub fn with_limits_at(&self, windows: &[LimitWindow], at: crate::Timestamp) -> Self {
        let mut out = self.clone();
        for node in out.nodes.values_mut() {
            if let Some(w) =
                windows.iter().filter(|w| w.node == node.id && w.covers(at)).max_by_key(|w| w.from)
            {
                node.import_limit = w.import_limit.unwrap_or(node.import_limit);
                node.export_limit = w.export_limit.unwrap_or(node.export_limit);
            }
        }
        out
    }

    /// The feeder a site is attached to.
    #[must_use]
    pub fn feeder_of(&self, site: SiteId) -> Option<GridNodeId> {
        self.site_feeder.get(&site).copied()
    }

    /// Number of attached sites.
    #[must_use]
    pub fn site_count(&self) -> usize {
        self.site_feeder.len()
    }

    /// The nodes from `id` up to its root, `id` first.
    #[must_use]
    pub fn path_to_root(&self, id: GridNodeId) -> Vec<GridNodeId> {
        let mut path = Vec::new();
        let mut at = self.nodes.get(&id);
        while let Some(node) = at {
            path.push(node.id);
            at = node.parent.and_then(|p| self.nodes.get(&p));
        }
        path
    }

    /// The nodes from a site's feeder up to its root, feeder first; empty for an unknown site.
    #[must_use]
    pub fn site_path(&self, site: SiteId) -> Vec<GridNodeId> {
        self.feeder_of(site).map(|f| self.path_to_root(f)).unwrap_or_default()
    }

    /// Every node ordered so that a parent comes before its children (roots first, then by
    /// depth, ties by id): the order in which to aggregate downwards or to read a plan.
    #[must_use]
    pub fn top_down(&self) -> Vec<GridNodeId> {
        let mut order: Vec<GridNodeId> = self.roots().map(|n| n.id).collect();
        let mut i = 0;
        while i < order.len() {
            order.extend_from_slice(self.children(order[i]));
            i += 1;
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> GridNodeId {
        GridNodeId::from_bytes([n; 16])
    }

    fn node(n: u8, kind: GridNodeKind, parent: Option<u8>) -> GridNode {
        GridNode {
            id: id(n),
            kind,
            parent: parent.map(id),
            name: format!("node {n}"),
            import_limit: Watts(400_000),
            export_limit: Watts(200_000),
        }
    }

    fn town() -> Vec<GridNode> {
        vec![
            node(1, GridNodeKind::Transformer, None),
            node(2, GridNodeKind::Feeder, Some(1)),
            node(3, GridNodeKind::Feeder, Some(1)),
            node(4, GridNodeKind::Transformer, Some(3)),
            node(5, GridNodeKind::Feeder, Some(4)),
        ]
    }

    #[test]
    fn a_limit_window_replaces_a_nodes_limits_while_it_is_in_force() {
        let feeder = GridNodeId::from_bytes([7; 16]);
        let node = GridNode {
            id: feeder,
            kind: GridNodeKind::Feeder,
            parent: None,
            name: "f".into(),
            import_limit: Watts(150_000),
            export_limit: Watts(100_000),
        };
        let t = Topology::new(vec![node], []).unwrap();
        let at = |s: &str| s.parse::<crate::Timestamp>().unwrap();
        let windows = [
            LimitWindow {
                node: feeder,
                from: at("2026-12-01T10:00:00Z"),
                until: at("2026-12-01T12:00:00Z"),
                import_limit: Some(Watts(20_000)),
                export_limit: None,
            },
            LimitWindow {
                node: feeder,
                from: at("2026-12-01T11:00:00Z"),
                until: at("2026-12-01T11:30:00Z"),
                import_limit: Some(Watts(5_000)),
                export_limit: Some(Watts(0)),
            },
        ];
        let limits = |s: &str| {
            let n = t.with_limits_at(&windows, at(s));
            let n = n.node(feeder).unwrap();
            (n.import_limit.get(), n.export_limit.get())
        };
        assert_eq!(limits("2026-12-01T09:59:59Z"), (150_000, 100_000));
        assert_eq!(limits("2026-12-01T10:00:00Z"), (20_000, 100_000));
        assert_eq!(limits("2026-12-01T11:10:00Z"), (5_000, 0), "the window starting last wins");
        assert_eq!(limits("2026-12-01T12:00:00Z"), (150_000, 100_000), "a window ends before its until");
    }

    #[test]
    fn paths_run_from_the_feeder_to_the_root() {
        let site = SiteId::from_bytes([9; 16]);
        let t = Topology::new(town(), [(site, id(5))]).unwrap();
        assert_eq!(t.site_path(site), vec![id(5), id(4), id(3), id(1)]);
        assert_eq!(t.children(id(1)), &[id(2), id(3)]);
        assert_eq!(t.sites_on(id(5)), &[site]);
        assert_eq!(t.top_down(), vec![id(1), id(2), id(3), id(4), id(5)]);
        assert_eq!(t.site_count(), 1);
    }

    #[test]
    fn inconsistent_descriptions_are_refused() {
        let mut nodes = town();
        nodes[0].parent = Some(id(5));
        assert!(matches!(Topology::new(nodes, []), Err(TopologyError::Cycle(_))));

        let mut nodes = town();
        nodes.push(node(6, GridNodeKind::Feeder, Some(77)));
        assert!(matches!(Topology::new(nodes, []), Err(TopologyError::UnknownParent { .. })));

        let mut nodes = town();
        nodes[1].export_limit = Watts(-1);
        let err = Topology::new(nodes, []).unwrap_err();
        assert!(err.to_string().contains("export_limit must not be negative"), "{err}");

        let mut nodes = town();
        nodes.push(node(2, GridNodeKind::Feeder, None));
        assert!(matches!(Topology::new(nodes, []), Err(TopologyError::DuplicateNode(_))));

        let site = SiteId::from_bytes([9; 16]);
        assert!(matches!(Topology::new(town(), [(site, id(42))]), Err(TopologyError::UnknownFeeder { .. })));
        assert!(matches!(Topology::new(town(), [(site, id(1))]), Err(TopologyError::NotAFeeder { .. })));
        assert!(matches!(
            Topology::new(town(), [(site, id(2)), (site, id(3))]),
            Err(TopologyError::DuplicateSite(_))
        ));
    }

    #[test]
    fn self_parent_is_a_cycle() {
        let nodes = vec![node(1, GridNodeKind::Feeder, Some(1))];
        assert!(matches!(Topology::new(nodes, []), Err(TopologyError::Cycle(_))));
    }
}
