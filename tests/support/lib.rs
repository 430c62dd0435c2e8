//! Test support for wasmig's integration tests: a fresh PostgreSQL database or SQLite file
//! per test, project folders built on the fly, and real components built from `plugins/`.
//!
//! A test that needs PostgreSQL fails with the reason when no server answers; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use wasmig::{Config, Migrator};

pub mod json;

/// Where the tests find a PostgreSQL server they may create databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("WASMIG_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Builds every plugin (once per test process) and returns the path of one component.
/// `plugin` is the folder name under `plugins/`, e.g. `hostile-loop`.
pub fn component(plugin: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(workspace_root().join("scripts/build-components.sh"))
            .status()
            .map_err(|e| format!("cannot run scripts/build-components.sh: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("scripts/build-components.sh failed: {status}")) }
    });
    if let Err(reason) = built {
        panic!("the test components could not be built: {reason}");
    }
    let path = target_dir().join("wasm32-wasip2/release").join(format!("{}.wasm", plugin.replace('-', "_")));
    assert!(path.is_file(), "component {} was not built", path.display());
    path
}

/// The `wasmig` binary, built once per test process.
pub fn wasmig_binary() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let status = cargo()
            .args(["build", "--quiet", "-p", "wasmig", "--bin", "wasmig"])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("cargo build -p wasmig failed: {status}")) }
    });
    if let Err(reason) = built {
        panic!("the wasmig binary could not be built: {reason}");
    }
    target_dir().join("debug/wasmig")
}

/// Runs `wasmig ARGS --format json` on `project` against `db` and parses its output against
/// the schema ([`json::JsonRun`]); the process's exit code must be the one its result names.
pub fn wasmig_json(project: &Project, db: &TestDb, args: &[&str]) -> json::JsonRun {
    let output = std::process::Command::new(wasmig_binary())
        .env("WASMIG_PROJECT", project.path())
        .env("DATABASE_URL", &db.url)
        .env("XDG_CACHE_HOME", target_dir().join("test-component-cache"))
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run wasmig");
    let run = json::JsonRun::parse(&output.stdout);
    assert_eq!(Some(i32::from(run.result.exit_code)), output.status.code(), "the result names the exit code");
    assert_eq!(run.result.ok, run.result.exit_code == 0);
    run
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database private to one test: a fresh PostgreSQL database (dropped afterwards) or a
/// SQLite file in a temporary folder.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!(
            "these tests need PostgreSQL at {url} (set WASMIG_TEST_POSTGRES, or run scripts/ensure-postgres.sh): {e}"
        )
    });
    tokio::spawn(connection);
    client
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => TestDb::postgres().await,
            Backend::Sqlite => TestDb::sqlite(),
        }
    }

    pub async fn postgres() -> TestDb {
        let admin = postgres_admin_url();
        let name = format!("wasmig_test_{}", unique_suffix());
        admin_client(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        TestDb { backend: Backend::Postgres, url: format!("{base}/{name}"), postgres_name: Some(name), _dir: None }
    }

    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite:{}", dir.path().join("test.db").display());
        TestDb { backend: Backend::Sqlite, url, postgres_name: None, _dir: Some(dir) }
    }

    /// Another handle on a database a [`TestDb`] owns (which drops it): for a second task.
    pub fn existing(backend: Backend, url: &str) -> TestDb {
        TestDb { backend, url: url.to_owned(), postgres_name: None, _dir: None }
    }

    /// A direct connection for assertions, outside wasmig.
    pub async fn inspect(&self) -> Inspector {
        match self.backend {
            Backend::Postgres => Inspector::Postgres(admin_client(&self.url).await),
            Backend::Sqlite => {
                let path = self.url.strip_prefix("sqlite:").expect("sqlite URL");
                let connection = rusqlite::Connection::open(path).expect("open the test SQLite file");
                // Wait out a backfill batch's write lock rather than fail with SQLITE_BUSY.
                connection.busy_timeout(std::time::Duration::from_secs(30)).expect("busy timeout");
                Inspector::Sqlite(connection)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        cleanup(postgres_admin_url(), format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

/// Runs cleanup SQL from a `Drop`, which runs outside any runtime: on a short-lived runtime of
/// its own thread. Failures are ignored; there is nobody left to tell.
pub fn cleanup(url: String, sql: String) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.ok()?;
            tokio::spawn(connection);
            client.batch_execute(&sql).await.ok()
        })
    })
    .join();
}

/// A plain connection to a test database, for asserting what wasmig did.
pub enum Inspector {
    Postgres(tokio_postgres::Client),
    Sqlite(rusqlite::Connection),
}

impl Inspector {
    /// Runs a query whose single column is an integer, returning the first row's value.
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Inspector::Postgres(client) => {
                let row = client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                row.get::<_, i64>(0)
            }
            Inspector::Sqlite(connection) => {
                connection.query_row(sql, [], |row| row.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    }

    /// Whether a table exists.
    pub async fn table_exists(&self, table: &str) -> bool {
        let sql = match self {
            Inspector::Postgres(_) => {
                format!("SELECT count(*) FROM pg_tables WHERE tablename = '{table}'")
            }
            Inspector::Sqlite(_) => {
                format!("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
            }
        };
        self.count(&sql).await > 0
    }

    pub async fn execute(&self, sql: &str) {
        match self {
            Inspector::Postgres(client) => client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")),
            Inspector::Sqlite(connection) => connection.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }
}

/// A migrations project in a temporary folder.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Default for Project {
    fn default() -> Self {
        Project::new()
    }
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("temporary folder");
        let project = Project { dir };
        project.write("wasmig.toml", "[limits]\nfuel = 2000000000\nmemory_mib = 64\ntimeout_secs = 20\n");
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, contents: &str) {
        self.write_bytes(relative, contents.as_bytes());
    }

    pub fn write_bytes(&self, relative: &str, contents: &[u8]) {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folder");
        }
        std::fs::write(&path, contents).expect("write project file");
    }

    /// Adds a SQL migration folder.
    pub fn sql(&self, folder: &str, up: &str, down: Option<&str>, verify: Option<&str>) -> &Self {
        self.write(&format!("{folder}/up.sql"), up);
        if let Some(down) = down {
            self.write(&format!("{folder}/down.sql"), down);
        }
        if let Some(verify) = verify {
            self.write(&format!("{folder}/verify.sql"), verify);
        }
        self
    }

    /// Adds a component migration built from `plugins/<plugin>`, with extra manifest lines.
    pub fn component(&self, folder: &str, plugin: &str, manifest_extra: &str) -> &Self {
        let bytes = std::fs::read(component(plugin)).expect("read the built component");
        self.write_bytes(&format!("{folder}/migration.wasm"), &bytes);
        self.write(&format!("{folder}/migration.toml"), &format!("kind = \"component\"\n{manifest_extra}"));
        self
    }

    /// The project's config against `db`, with a private component cache.
    pub fn config(&self, db: &TestDb) -> Config {
        let mut config = Config::load(self.path(), Some(&db.url)).expect("valid test project");
        config.cache_dir = Some(target_dir().join("test-component-cache"));
        config.lock_timeout = std::time::Duration::from_secs(60);
        config
    }

    pub async fn migrator(&self, db: &TestDb) -> Migrator {
        Migrator::open(self.config(db)).await.expect("open the migrator")
    }
}

/// The demo's users table with `count` rows, as the demo's first migration creates it.
pub fn users_migration(count: u32) -> String {
    format!(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL);
         WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count})
         INSERT INTO users (id, email) SELECT n, 'user' || n || '@Example.COM' FROM seq;"
    )
}

/// The statements PostgreSQL logged for one test database, read from the server's log file
/// (`WASMIG_TEST_POSTGRES_LOG`, else Debian's `/var/log/postgresql/postgresql-*-main.log`).
pub struct StatementLog {
    path: PathBuf,
    offset: u64,
    database: String,
}

impl StatementLog {
    /// Turns on `log_statement = 'all'` for `db`'s future sessions and starts reading there.
    pub async fn start(db: &TestDb) -> StatementLog {
        let database = db.postgres_name.clone().expect("a statement log needs a PostgreSQL test database");
        admin_client(&postgres_admin_url())
            .await
            .batch_execute(&format!("ALTER DATABASE {database} SET log_statement = 'all'"))
            .await
            .expect("enable statement logging");
        let path = std::env::var_os("WASMIG_TEST_POSTGRES_LOG").map(PathBuf::from).unwrap_or_else(|| {
            let mut logs: Vec<PathBuf> = std::fs::read_dir("/var/log/postgresql")
                .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
            logs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
            logs.pop().unwrap_or_else(|| {
                panic!(
                    "no PostgreSQL log in /var/log/postgresql; set WASMIG_TEST_POSTGRES_LOG to the server's log file"
                )
            })
        });
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        StatementLog { path, offset, database }
    }

    /// The statements logged for the database since `start`.
    pub fn statements(&self) -> Vec<String> {
        let bytes = std::fs::read(&self.path).unwrap_or_else(|e| panic!("read {}: {e}", self.path.display()));
        let start = usize::try_from(self.offset).unwrap_or(0).min(bytes.len());
        let marker = format!("@{} ", self.database);
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .filter(|line| {
                line.contains(&marker) && (line.contains("LOG:  statement: ") || line.contains("LOG:  execute "))
            })
            .map(str::to_owned)
            .collect()
    }

    /// Waits (up to 5 s) until a statement containing `text` is logged: the positive control
    /// that shows logging works, so an empty log means something.
    pub async fn wait_for(&self, text: &str) {
        for _ in 0..50 {
            if self.statements().iter().any(|s| s.contains(text)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the statement log at {} never showed {text:?}", self.path.display());
    }
}
