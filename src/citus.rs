//! Scale-out on Citus (docs/scale-out.md): the step that turns a migrated
//! database on a Citus coordinator into the distributed one. Its SQL lives in
//! `sql/citus/`, so an operator can read (or run) exactly what it does.

use sqlx::PgConnection;

/// Reference tables, then every `shop_id` table distributed by shop and
/// co-located; idempotent (a table already distributed is left alone).
pub const DISTRIBUTE: &str = include_str!("../sql/citus/distribute.sql");

#[derive(Debug, thiserror::Error)]
pub enum CitusError {
    #[error(
        "the citus extension is not installed in this database: run `CREATE EXTENSION citus` on the coordinator \
         and add the workers first (docs/scale-out.md)"
    )]
    NotInstalled,
    #[error("the database has pending migrations {0:?}: run `billing-ledger migrate` first")]
    PendingMigrations(Vec<i64>),
    #[error("the coordinator has no worker nodes: add them with citus_add_node first")]
    NoWorkers,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The tables `DISTRIBUTE` names as `reference` or `distributed` (its
/// `<kind>_tables` array), so a test can hold every table of the schema
/// to one of the two lists.
pub fn planned(kind: &str) -> Vec<&'static str> {
    let start = format!("{kind}_tables text[] := ARRAY[");
    let Some((_, rest)) = DISTRIBUTE.split_once(start.as_str()) else {
        return Vec::new();
    };
    let list = rest.split_once(']').map_or("", |(list, _)| list);
    list.split(',')
        .map(|t| t.trim().trim_matches('\''))
        .filter(|t| !t.is_empty())
        .collect()
}

/// How the tables ended up: `(table, "reference" | "distributed")`.
pub type Layout = Vec<(String, String)>;

/// Distributes a migrated database; answers the layout afterwards.
pub async fn distribute(conn: &mut PgConnection) -> Result<Layout, CitusError> {
    let version: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
            .fetch_optional(&mut *conn)
            .await?;
    if version.is_none() {
        return Err(CitusError::NotInstalled);
    }
    let pending = crate::pending_migrations(&mut *conn).await?;
    if !pending.is_empty() {
        return Err(CitusError::PendingMigrations(pending));
    }
    let workers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' AND isactive",
    )
    .fetch_one(&mut *conn)
    .await?;
    if workers == 0 {
        return Err(CitusError::NoWorkers);
    }
    sqlx::raw_sql(DISTRIBUTE).execute(&mut *conn).await?;
    layout(conn).await
}

/// The Citus tables of this database and their kind.
pub async fn layout(conn: &mut PgConnection) -> Result<Layout, CitusError> {
    Ok(sqlx::query_as(
        "SELECT logicalrelid::regclass::text,
                CASE WHEN partmethod = 'h' THEN 'distributed' ELSE 'reference' END
           FROM pg_dist_partition
          WHERE partmethod = 'h' OR repmodel = 't'
          ORDER BY 2 DESC, 1",
    )
    .fetch_all(conn)
    .await?)
}
