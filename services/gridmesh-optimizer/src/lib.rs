//! The grid balancing optimizer of gridmesh, free of IO.
//!
//! For each step of a horizon (96 quarter hours by default) it decides, per site, battery
//! charge and discharge, PV curtailment, import and export, minimising energy cost, battery wear
//! and priced deviations from utility requests and market commitments, within device limits and
//! the limits of the grid tree. Every soft goal carries priced slack, so a valid instance always
//! has a plan; limits exceeded are reported, and the plan says which node limits bind and what
//! they cost (shadow prices).
//!
//! * [`Instance`]: the input, with [`Instance::validate`] and [`Instance::input_hash`];
//!   [`generate::neighbourhood`] makes realistic random ones.
//! * [`ipm::solve`]: the structured interior-point solver (the one to use).
//! * [`reference::solve`]: the same LP written monolithically and solved by HiGHS, the
//!   reference in tests.
//! * [`Plan`]: the output, with [`Plan::summary`] for people.
//! * [`grid`]: from the grid's domain types (sites, topology, latest readings, requests) to an
//!   instance, and from a plan to one step's setpoints: the dispatch job's pure part.
//! * [`single::optimal_schedule`]: the exact schedule of one battery against known prices, by
//!   dynamic programming.
//!
//! Units: kW and kWh as `f64`, positive power = import from the grid; prices in currency units
//! per kWh (request prices per kW per step). `docs/optimizer.md` has the model, the JSON format
//! and the algorithm.
#![warn(missing_docs)]

pub mod generate;
pub mod grid;
mod instance;
pub mod ipm;
mod plan;
pub mod reference;
pub mod single;

pub use instance::{
    Battery, GridNode, Instance, InstanceError, MAX_STEPS, Penalties, RequestKind, Site, StepLimits, Tariff,
    UtilityRequest,
};
pub use plan::{
    AreaPlan, Binding, NodePlan, Objective, Plan, REPORT_TOLERANCE_KW, RequestOutcome, SitePlan, SolverStats,
    Violation, ViolationKind,
};

use thiserror::Error;

/// Why no plan came out.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum OptimizeError {
    /// The instance was refused before solving.
    #[error("invalid instance: {0}")]
    Instance(#[from] InstanceError),
    /// The interior-point method hit its iteration limit before meeting its tolerances.
    #[error(
        "not converged after {iterations} iterations (relative gap {relative_gap:.1e}, primal infeasibility {primal_infeasibility:.1e}, dual infeasibility {dual_infeasibility:.1e})"
    )]
    NotConverged {
        /// Iterations run.
        iterations: u64,
        /// Relative duality gap reached.
        relative_gap: f64,
        /// Scaled primal infeasibility reached.
        primal_infeasibility: f64,
        /// Scaled dual infeasibility reached.
        dual_infeasibility: f64,
    },
    /// The interior-point iterates stopped being finite numbers (a bug or an extreme instance).
    #[error("numerical trouble: {0}")]
    NumericalTrouble(String),
    /// The reference solver (HiGHS) failed.
    #[error("solver failed: {0}")]
    Solver(String),
}
