//! The PostgreSQL data layer of gridmesh.
//!
//! Functions take a pool (or a connection) and domain types from `gridmesh-core`, and return
//! domain types or [`DbError`]. Nothing here knows about HTTP or MQTT; callers map errors to
//! their own answers (the API uses [`DbError::constraint`] to turn a violated constraint into a
//! precise 409 or 422).
//!
//! The schema lives in `migrations/` at the repository root and is embedded in [`MIGRATOR`].

mod agents;
mod dispatch;
mod enrolment;
mod error;
mod grid;
mod grid_file;
mod homes;
mod ingest;
mod limits;
mod market;
mod pool;
mod provision;
mod readings;
mod settlement;
mod telemetry;
mod users;

pub use agents::{
    AgentKey, AgentSummary, agent_of_site, create_agent, enrol_agent, enroll_key, find_active_key,
    list_agents, revoke_key, rotate_active_key, unresolved_flagged,
};
pub use dispatch::{
    DispatchSetpoint, NewPlan, NewUtilityRequest, PlanRecord, RequestKind, SetpointAnswer, SetpointRecord,
    UtilityRequest, cancel_utility_request, create_utility_request, grid_size, plan_body, recent_plans,
    record_setpoint_answer, record_setpoints, setpoint_records, store_plan, utility_requests_between,
    utility_requests_changed_at,
};
pub use enrolment::{CodeEnrolment, CodeRefusal, NewEnrolmentCode, create_enrolment_code, enrol_with_code};
pub use error::DbError;
pub use grid::{
    RetireRefusal, get_site, insert_grid_node, insert_site, list_sites, load_topology, retire_grid_node,
    update_grid_node,
};
pub use grid_file::{homes_import_by_feeder, import_grid, stored_grid};
pub use homes::{
    Decommissioned, Home, HomeStatus, assign_home, decommission_site, decommissioned_at, get_home,
    list_homes, pending_homes, rating_history, register_home, update_site,
};
pub use ingest::{CommitReport, IngestRow, commit_ingest};
pub use limits::{
    StoredLimitWindow, add_limit_window, limit_windows_between, limit_windows_version, remove_limit_window,
};
pub use market::{
    ClearingSummary, Commitment, DepthLevel, NewOrder, OrderFilter, OrderStatus, StoredOrder, StoredStrategy,
    StoredTrade, TradeFilter, ZonePrice, book_depth, cancel_order, clear_period, clearing_result,
    create_strategy, delivery_commitments, disable_strategy, get_order, get_strategy, list_orders,
    list_strategies, list_trades, periods_to_clear, place_order, strategies_due,
};
pub use pool::{ConnectOptions, MIGRATOR, connect, connect_with_retry, migrate};
pub use provision::{
    AgentEnrolment, Ensured, EnsuredAgent, Neighbourhood, ensure_agent, ensure_grid_node,
    ensure_neighbourhood, ensure_site, ensure_user,
};
pub use readings::{
    Gap, LatestFilter, PeriodEnergy, drop_telemetry_before, flag_period, flagged_readings, gaps, get_sites,
    latest_readings, missing_total, period_pv, resolve_flags, site_energy, site_readings,
};
pub use settlement::{
    AnchorJob, AnchorRecord, ChainKey, SettlementSummary, anchor_of, anchors_due, chain_keys_due,
    distribution_claims, distributions_due, ledger_balances, mark_chain_key, mark_published,
    metering_complete, period_postings, periods_awaiting_data, periods_to_settle, record_anchor,
    revision_lines, set_reward_address, settlement_of, settlement_sites, settlement_trades,
    site_reward_addresses, store_adjustment, store_distribution, store_settlement,
};
pub use telemetry::{
    StoredReading, TELEMETRY_DAYS_AHEAD, TELEMETRY_DAYS_BACK, count_telemetry, ensure_telemetry_partitions,
    insert_telemetry, latest_reading,
};
pub use users::{
    ApiToken, Caller, NewUser, User, UserFilter, authenticate, create_user, get_user, hash_token,
    issue_token, list_users, revoke_token,
};

/// The connection pool type used throughout gridmesh.
pub type Pool = sqlx::PgPool;
