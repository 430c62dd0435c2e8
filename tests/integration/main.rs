//! wasmig's integration tests: the engine against a real PostgreSQL and real SQLite files,
//! with real components built from `plugins/`. One harness, a module per area.

mod artifacts;
mod audit;
mod autocommit;
mod backfills;
mod backup;
mod cli;
mod components;
mod concurrency;
mod connection;
mod guard;
mod pipeline;
mod pooler;
mod rehearsal;
mod repair;
mod scaffold;
mod sql_migrations;
mod take_over;
mod transactions;
mod versions;
mod walls;

/// Runs the same test body against both backends: `backends!(name, |backend| async { … })`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(wasmig_tests::Backend::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(wasmig_tests::Backend::Sqlite).await;
            }
        }
    };
}
