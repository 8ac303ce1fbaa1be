//! Cursor pagination: `limit` (1–100, default 20) and `starting_after=<id>`,
//! answered as `{ "data": [...], "has_more": bool }`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

#[derive(Debug, Clone, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Id of the last object of the previous page.
    pub starting_after: Option<Uuid>,
}

impl PageParams {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(20)
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// `rows` was fetched with `limit + 1`: the extra row only says there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: i64) -> Self {
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Page { data: rows, has_more }
    }
}
