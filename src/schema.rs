//! The database schema, as versioned SQL files under `migrations/`,
//! embedded in the binary and applied in order by refinery.

use refinery::Report;
use tokio_postgres::Client;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Applies every migration not yet applied; returns their names.
pub async fn migrate(client: &mut Client) -> Result<Vec<String>, refinery::Error> {
    let report: Report = embedded::migrations::runner().run_async(client).await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect())
}
