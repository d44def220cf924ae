//! The `/v1` API, one module per resource. Handlers take [`crate::auth::Authenticated`] and the
//! problem-JSON extractors of [`crate::error`].

use axum::Router;
use axum::routing::{delete, get, post, put};

use serde::Serialize;

use crate::AppState;

mod agents;
pub use agents::EnrolGuard;
mod dispatch;
mod grid;
pub mod grid_file;
mod market;
mod readings;
mod settlements;
mod sites;
mod users;

pub use settlements::AnchorOut;

/// Routes under `/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(users::me))
        .route("/users", post(users::create).get(users::list))
        .route("/users/{id}", get(users::get_one))
        .route("/users/{id}/tokens", post(users::issue_token))
        .route("/tokens/{id}", delete(users::revoke_token))
        .route("/server-key", get(readings::server_key))
        .route("/readings/latest", get(readings::latest_all))
        .route("/ingest/gaps", get(readings::all_gaps))
        .route("/sites/{id}/latest", get(readings::latest))
        .route("/sites/{id}/readings", get(readings::history))
        .route("/sites/{id}/energy", get(readings::energy))
        .route("/sites/{id}/gaps", get(readings::site_gaps))
        .route("/sites/{id}/flags", get(readings::flags))
        .route("/sites/{id}/flags/resolve", post(readings::resolve))
        .route("/sites/{id}/agents", post(readings::enrol).get(agents::list))
        .route("/sites/{id}/agents/{agent}/key", post(agents::rotate))
        .route("/sites/{id}/enrolment-codes", post(agents::create_code))
        .route("/enrol", post(agents::enrol))
        .route("/market/orders", post(market::place).get(market::list))
        .route("/market/orders/{id}", get(market::get_one).put(market::replace).delete(market::cancel))
        .route("/market/periods/{start}", get(market::period))
        .route("/market/periods/{start}/book", get(market::book))
        .route("/market/periods/{start}/commitments", get(market::commitments))
        .route("/market/trades", get(market::trades))
        .route("/market/strategies", post(market::create_strategy).get(market::list_strategies))
        .route("/market/strategies/{id}", delete(market::delete_strategy))
        .route("/settlements/{start}", get(settlements::get_one))
        .route("/settlements/{start}/sites/{site}", get(settlements::line))
        .route("/me/reward-address", put(settlements::set_reward_address))
        .route("/rewards/{start}/claims/{address}", get(settlements::claim))
        .route("/dispatch/requests", post(dispatch::create_request).get(dispatch::list_requests))
        .route("/dispatch/requests/{id}", delete(dispatch::cancel_request))
        .route("/dispatch/plans", get(dispatch::list_plans))
        .route("/dispatch/plans/{id}", get(dispatch::get_plan))
        .route("/dispatch/setpoints", get(dispatch::list_setpoints))
        // Provisioning with caller-chosen ids (operator): create unless it exists.
        .route("/grid/nodes", get(sites::nodes))
        .route("/grid/nodes/{id}/limits", post(sites::add_window).get(sites::windows))
        .route("/grid/nodes/{id}/retire", post(sites::retire_node))
        .route("/grid/limits/{id}", delete(sites::remove_window))
        .route("/grid/nodes/{id}", put(grid::put_node).patch(sites::patch_node))
        .route("/grid/import", post(grid_file::import))
        .route("/grid/export", get(grid_file::export))
        .route("/sites", get(sites::list).post(sites::register))
        .route("/sites/pending", get(sites::pending))
        .route("/sites/{id}/assign", post(sites::assign))
        .route("/sites/{id}/decommission", post(sites::decommission))
        .route("/sites/{id}", put(grid::put_site).get(sites::get_one).patch(sites::patch_site))
        .route("/users/{id}", put(grid::put_user))
        .route("/sites/{id}/agents/{agent}", put(grid::put_agent).delete(agents::revoke))
}

/// One page of a keyset-paged list.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    next_after: Option<String>,
}

impl<T> Page<T> {
    /// A page from rows fetched with `limit`: when the page is full, the next page starts after
    /// the cursor of its last row.
    pub(crate) fn new<R>(
        rows: Vec<R>,
        limit: u32,
        cursor: impl Fn(&R) -> String,
        map: impl FnMut(R) -> T,
    ) -> Self {
        let next_after = (rows.len() == limit as usize).then(|| rows.last().map(&cursor)).flatten();
        Self { items: rows.into_iter().map(map).collect(), next_after }
    }
}
