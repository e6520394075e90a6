//! Test harness: real `nats-server -js` per test (own port, own store dir),
//! a fresh SQLite file or PostgreSQL database per test, and the real
//! closeloop server in-process on random ports (`spawn_app`).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use closeloop_proto::v1::ticket_service_client::TicketServiceClient;
use closeloop_server::{Config, Listeners, Roles};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A private nats-server with JetStream, killed on drop.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: TempDir,
}

/// A port free now for a server a test starts, below the kernel's
/// ephemeral range and never the same twice in this process. A port the
/// kernel hands out for `bind(0)` is in the ephemeral range, which the
/// local ends of outgoing connections are drawn from too: with many
/// processes connecting to the broker and the database, one of them could
/// take the port before the server binds it ("address already in use").
fn free_port() -> u16 {
    use std::sync::Mutex;
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const FLOOR: u16 = 10_000;
    if low <= FLOOR + 1000 {
        // An unusual ephemeral range: let the kernel choose.
        return StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let span = low - FLOOR;
    let mut next = NEXT.lock().expect("port lock");
    // Each test binary starts at its own place, so consecutive binaries
    // (and their lingering sockets) do not meet.
    let mut port =
        next.unwrap_or_else(|| FLOOR + (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u16);
    for _ in 0..span {
        let candidate = port;
        port = if port + 1 >= low { FLOOR } else { port + 1 };
        if StdListener::bind(("127.0.0.1", candidate)).is_ok() {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free port between {FLOOR} and {low}");
}

fn nats_binary() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into())
}

impl Nats {
    pub fn start() -> Nats {
        let store = tempfile::tempdir().unwrap();
        let mut n = Nats {
            child: None,
            port: free_port(),
            store,
        };
        // A port found free can be taken before the server binds it (by a
        // server of another process): then the server exits, and another
        // port is tried.
        for _ in 0..3 {
            match n.try_launch() {
                Ok(()) => return n,
                Err(why) => {
                    eprintln!("nats-server on port {}: {why}; another port", n.port);
                    n.port = free_port();
                }
            }
        }
        n.launch();
        n
    }

    fn launch(&mut self) {
        if let Err(why) = self.try_launch() {
            panic!("nats-server on port {}: {why}", self.port);
        }
    }

    /// Starts the server and waits until it accepts connections and is
    /// still running (so the port is its own); `Err` with its log if it
    /// exited.
    fn try_launch(&mut self) -> Result<(), String> {
        let log = self.store.path().join("nats-server.log");
        let child = Command::new(nats_binary())
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path().join("js"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server (apt-get install nats-server, or set NATS_SERVER_BIN): {e}")
            });
        self.child = Some(child);
        let exited = |n: &mut Nats| {
            let c = n.child.as_mut().expect("just started");
            match c.try_wait() {
                Ok(Some(status)) => {
                    n.child = None;
                    Some(format!(
                        "exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ))
                }
                _ => None,
            }
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(why) = exited(self) {
                return Err(why);
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Accepting, but maybe another process's listener: ours must still
        // be running a moment later.
        std::thread::sleep(Duration::from_millis(50));
        match exited(self) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts the server on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap()
    }

    /// The event stream of the install with `prefix` (named as the server names it).
    pub async fn events_stream(&self, prefix: &str) -> async_nats::jetstream::stream::Stream {
        let name = closeloop_eventstore::Prefix::parse(prefix)
            .unwrap()
            .events_stream();
        async_nats::jetstream::new(self.client().await)
            .get_stream(name)
            .await
            .unwrap()
    }

    /// How many events the install with `prefix` has stored.
    pub async fn event_count(&self, prefix: &str) -> u64 {
        let mut s = self.events_stream(prefix).await;
        s.info().await.unwrap().state.messages
    }

    /// Events of the given aggregate types (`ticket`, `routing`, ...) in
    /// the stream: counts that other roles' events (notifications written
    /// in reaction, at their own pace) do not change.
    pub async fn events_of(&self, prefix: &str, aggregate_types: &[&str]) -> u64 {
        use futures::StreamExt;
        let s = self.events_stream(prefix).await;
        let mut n = 0;
        for t in aggregate_types {
            let mut subjects = s
                .info_with_subjects(format!("{prefix}.events.{t}.>"))
                .await
                .unwrap();
            while let Some(x) = subjects.next().await {
                n += x.unwrap().1 as u64;
            }
        }
        n
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Which read-model backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database: a SQLite file in a temp dir, or a new PostgreSQL
/// database on `CLOSELOOP_TEST_POSTGRES_URL` (default
/// `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.
pub struct TestDb {
    pub url: String,
    dir: TempDir,
    pg_name: Option<String>,
}

fn pg_admin_url() -> String {
    std::env::var("CLOSELOOP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("closeloop.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = pg_admin_url();
                let name = format!("closeloop_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL tests need a server at {admin} (set CLOSELOOP_TEST_POSTGRES_URL): {e}")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDb {
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// The SQLite file, for tests that delete it.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("closeloop.db")
    }

    /// Empties the database: deletes the SQLite files or recreates the PG database.
    pub async fn wipe(&self) {
        match &self.pg_name {
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let p = format!("{}{suffix}", self.sqlite_path().display());
                    let _ = std::fs::remove_file(p);
                }
            }
            Some(name) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
                for sql in [
                    format!("DROP DATABASE {name} WITH (FORCE)"),
                    format!("CREATE DATABASE {name}"),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await
                        .unwrap();
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Best effort, on a thread of its own: Drop cannot be async.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running closeloop server.
pub struct App {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), closeloop_server::ServerError>>>,
}

/// Logs to the test's output when `RUST_LOG` is set.
fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Starts closeloop (all roles) on random ports against `nats` and `db_url`.
pub async fn spawn_app(nats_url: &str, db_url: &str, prefix: &str) -> App {
    spawn_app_with_webhooks(nats_url, db_url, prefix, None).await
}

/// [`spawn_app`] with a webhooks mapping file.
pub async fn spawn_app_with_webhooks(
    nats_url: &str,
    db_url: &str,
    prefix: &str,
    webhooks: Option<PathBuf>,
) -> App {
    spawn_app_configured(nats_url, db_url, prefix, webhooks, Default::default()).await
}

/// [`spawn_app`] with a webhooks mapping file and notification settings.
pub async fn spawn_app_configured(
    nats_url: &str,
    db_url: &str,
    prefix: &str,
    webhooks: Option<PathBuf>,
    notification: closeloop_notification::role::Config,
) -> App {
    spawn_app_with(
        nats_url,
        db_url,
        prefix,
        AppOptions {
            webhooks,
            notification,
            ..AppOptions::default()
        },
    )
    .await
}

/// What a test's closeloop runs with beyond its broker, database and prefix.
pub struct AppOptions {
    pub webhooks: Option<PathBuf>,
    pub notification: closeloop_notification::role::Config,
    pub clock: closeloop_server::ClockConfig,
    pub programs: PathBuf,
    pub roles: Roles,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            webhooks: None,
            notification: Default::default(),
            clock: Default::default(),
            programs: example("programs.yaml"),
            roles: Roles::all(),
        }
    }
}

/// [`spawn_app`] with `options`.
pub async fn spawn_app_with(
    nats_url: &str,
    db_url: &str,
    prefix: &str,
    options: AppOptions,
) -> App {
    let AppOptions {
        webhooks,
        notification,
        clock,
        programs,
        roles,
    } = options;
    init_logs();
    let listeners = Listeners::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let grpc_addr = listeners.grpc.local_addr().unwrap();
    let http_addr = listeners.http.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let config = Config {
        nats_url: nats_url.to_string(),
        database_url: db_url.to_string(),
        prefix: closeloop_server::prefix(prefix).unwrap(),
        roles,
        stream_replicas: 1,
        programs: Some(programs),
        webhooks: webhooks.clone(),
        notification,
        clock,
    };
    let task = tokio::spawn(closeloop_server::run(config, listeners, async {
        let _ = rx.await;
    }));
    // Ready when /readyz answers 200.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if task.is_finished() {
            panic!("server exited at start: {:?}", task.await.unwrap());
        }
        if http_get(http_addr, "/readyz").await.map(|(s, _)| s) == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    App {
        grpc_addr,
        http_addr,
        stop: Some(tx),
        task: Some(task),
    }
}

impl App {
    pub async fn tickets(&self) -> TicketServiceClient<Channel> {
        TicketServiceClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .unwrap()
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Graceful shutdown; returns the server's result.
    pub async fn stop(mut self) -> Result<(), closeloop_server::ServerError> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Minimal HTTP/1.1 GET: (status, body). `None` if the connection fails.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A free local TCP address (bound, then released) for a process to listen on.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// `closeloop serve --roles <role>` as a process of its own, on free
/// ports, with the example programs file (killed when dropped).
pub struct RoleProcess {
    pub role: &'static str,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub child: tokio::process::Child,
}

impl RoleProcess {
    /// Starts `bin` (the test's `env!("CARGO_BIN_EXE_closeloop")`) for
    /// `role` on NATS `nats`, database `db` and `prefix`, with `env` set;
    /// its stderr is piped (read it when it exits early).
    pub fn start(
        bin: &str,
        role: &'static str,
        (nats, db, prefix): (&str, &str, &str),
        env: &[(&str, String)],
    ) -> RoleProcess {
        let (grpc, http) = (free_addr(), free_addr());
        let child = tokio::process::Command::new(bin)
            .args(["serve", "--roles", role, "--nats-url", nats])
            .args(["--database-url", db, "--prefix", prefix])
            .arg("--grpc-addr")
            .arg(grpc.to_string())
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--programs")
            .arg(example("programs.yaml"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        RoleProcess {
            role,
            grpc,
            http,
            child,
        }
    }
}

/// Every crate's migrations, with the version range its new migrations
/// take (versions 1-4 predate the ranges and stay where they are;
/// `docs/architecture.md`).
pub fn migrators() -> Vec<(
    &'static str,
    &'static sqlx::migrate::Migrator,
    std::ops::RangeInclusive<i64>,
)> {
    vec![
        (
            "closeloop-readmodel",
            &closeloop_readmodel::MIGRATOR,
            1..=999,
        ),
        (
            "closeloop-directory",
            &closeloop_directory::MIGRATOR,
            1000..=1999,
        ),
        (
            "closeloop-ticketing",
            &closeloop_ticketing::MIGRATOR,
            2000..=2999,
        ),
        (
            "closeloop-escalation",
            &closeloop_escalation::MIGRATOR,
            3000..=3999,
        ),
        (
            "closeloop-notification",
            &closeloop_notification::MIGRATOR,
            4000..=4999,
        ),
        (
            "closeloop-analytics",
            &closeloop_analytics::MIGRATOR,
            5000..=5999,
        ),
    ]
}

/// Every row of `sql`'s answer as one line (`|`-separated columns: text,
/// integers of either width and floats as they are, a NULL as `NULL`).
/// Panics on a value of any other type, so two rows never compare equal
/// because both hold something it cannot show.
pub async fn dump(pool: &sqlx::AnyPool, sql: String) -> Vec<String> {
    use sqlx::{Row, ValueRef};
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (0..r.columns().len())
                .map(|i| {
                    if r.try_get_raw(i).unwrap().is_null() {
                        return "NULL".to_string();
                    }
                    r.try_get::<String, _>(i)
                        .or_else(|_| r.try_get::<i64, _>(i).map(|v| v.to_string()))
                        .or_else(|_| r.try_get::<i32, _>(i).map(|v| v.to_string()))
                        .or_else(|_| r.try_get::<f64, _>(i).map(|v| v.to_string()))
                        .unwrap_or_else(|e| panic!("column {i}: {e}"))
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// A unique prefix per test, so tests sharing a broker never meet.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The event store on `nats` under a prefix of the test's own.
pub async fn event_store(
    nats: &Nats,
) -> (
    closeloop_eventstore::Prefix,
    closeloop_eventstore::EventStore,
) {
    let prefix = closeloop_eventstore::Prefix::parse(&unique_prefix()).unwrap();
    let store = closeloop_eventstore::EventStore::open(
        nats.client().await,
        closeloop_eventstore::StoreConfig {
            prefix: prefix.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (prefix, store)
}

/// The value of a Prometheus sample in a `/metrics` body, named as it is
/// written there, labels included (0 if absent).
pub fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

impl App {
    /// Puts account `id` (with `csm` as its CSM) in the directory and waits
    /// until the directory view has it, so intake accepts feedback for it.
    pub async fn seed_account(&self, id: &str, csm: &str) {
        use closeloop_proto::v1;
        self.upsert_account(v1::Account {
            id: id.into(),
            name: format!("Account {id}"),
            team: vec![v1::AccountTeamMember {
                role: "csm".into(),
                email: csm.into(),
            }],
            ..Default::default()
        })
        .await;
        self.seed_person(csm, None).await;
    }

    /// Puts `account` in the directory and waits until the view has it.
    pub async fn upsert_account(&self, account: closeloop_proto::v1::Account) {
        use closeloop_proto::v1;
        let mut d = self.directory().await;
        let id = account.id.clone();
        let r = d
            .upsert_account(v1::UpsertAccountRequest {
                account: Some(account),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        d.get_account(v1::GetAccountRequest {
            account_id: id,
            min_sequence: r.sequence,
        })
        .await
        .unwrap();
    }

    /// Puts person `email` (reporting to `manager`) in the directory and
    /// waits until the view has them.
    pub async fn seed_person(&self, email: &str, manager: Option<&str>) {
        use closeloop_proto::v1;
        let mut d = self.directory().await;
        let r = d
            .upsert_person(v1::UpsertPersonRequest {
                person: Some(v1::Person {
                    email: email.into(),
                    name: format!("Person {email}"),
                    manager_email: manager.unwrap_or_default().into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        d.get_person(v1::GetPersonRequest {
            email: email.into(),
            min_sequence: r.sequence,
        })
        .await
        .unwrap();
    }

    /// The accounts and people the manual-ticket tests name: accounts
    /// ACME-001, ACME-002, ACC-0 to ACC-9, WAYNE-7 and A-1; owners dana@,
    /// a@ and b@vendor.example and a@b.io, reporting to lee@vendor.example.
    pub async fn seed_ticket_directory(&self) {
        self.seed_person("lee@vendor.example", None).await;
        let accounts = ["ACME-001", "ACME-002", "WAYNE-7", "A-1"]
            .map(String::from)
            .into_iter()
            .chain((0..10).map(|i| format!("ACC-{i}")));
        for account in accounts {
            self.seed_account(&account, "dana@vendor.example").await;
        }
        for person in [
            "dana@vendor.example",
            "a@vendor.example",
            "b@vendor.example",
            "a@b.io",
        ] {
            self.seed_person(person, Some("lee@vendor.example")).await;
        }
    }

    pub async fn directory(
        &self,
    ) -> closeloop_proto::v1::directory_service_client::DirectoryServiceClient<Channel> {
        closeloop_proto::v1::directory_service_client::DirectoryServiceClient::connect(format!(
            "http://{}",
            self.grpc_addr
        ))
        .await
        .unwrap()
    }
}

/// A file under `deploy/examples/`.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name)
}

/// Minimal HTTP/1.1 POST with a JSON body: (status, content-type, body).
pub async fn http_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String, String) {
    http_request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body,
    )
    .await
}

/// Minimal HTTP/1.1 request: (status, content-type, body).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a large body; ignore a reset here.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// Runs each named `async fn(Backend)` scenario as two tests, one on SQLite
/// and one on PostgreSQL: `closeloop_tests::on_both_backends!(a, b);`
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::Backend::Postgres).await }
            )*
        }
    };
}

impl App {
    /// Imports `deploy/examples/directory.yaml` over gRPC and waits until
    /// the directory views hold all of it.
    pub async fn import_example_directory(&self) {
        use closeloop_proto::v1;
        let text = std::fs::read_to_string(example("directory.yaml")).unwrap();
        let file: closeloop_directory::rows::DirectoryFile = serde_norway::from_str(&text).unwrap();
        let mut d = self.directory().await;
        for p in &file.people {
            d.upsert_person(v1::UpsertPersonRequest {
                person: Some(p.to_proto()),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let mut last_team = 0;
        for t in &file.teams {
            last_team = d
                .upsert_team(v1::UpsertTeamRequest {
                    team: Some(t.to_proto()),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .sequence;
        }
        let mut last_account = 0;
        for a in &file.accounts {
            last_account = d
                .upsert_account(v1::UpsertAccountRequest {
                    account: Some(a.to_proto()),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .sequence;
        }
        d.get_team(v1::GetTeamRequest {
            team_id: file.teams.last().unwrap().id.clone(),
            min_sequence: last_team,
        })
        .await
        .unwrap();
        d.get_account(v1::GetAccountRequest {
            account_id: file.accounts.last().unwrap().id.clone(),
            min_sequence: last_account,
        })
        .await
        .unwrap();
    }

    /// Waits (up to 15 s) until ticket `id` is in the ticket view.
    pub async fn wait_ticket(&self, id: &str) -> closeloop_proto::v1::GetTicketResponse {
        let mut c = self.tickets().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match c
                .get_ticket(closeloop_proto::v1::GetTicketRequest {
                    ticket_id: id.to_string(),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => return r.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => panic!("GetTicket {id}: {s:?}"),
            }
            assert!(Instant::now() < deadline, "ticket {id} never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits (up to 15 s) for the routing decision on feedback `feedback_id`.
pub async fn routing_decision(
    nats: &Nats,
    prefix: &str,
    feedback_id: &str,
) -> closeloop_proto::v1::RoutingDecided {
    use closeloop_proto::v1::routing_event::Event;
    use prost::Message;
    let stream = nats.events_stream(prefix).await;
    let subject = format!("{prefix}.events.routing.{feedback_id}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(m) = stream.get_first_raw_message_by_subject(&subject, 0).await {
            let e = closeloop_proto::v1::RoutingEvent::decode(m.payload.as_ref()).unwrap();
            match e.event {
                Some(Event::Decided(d)) => return d,
                other => panic!("first routing event is not a decision: {other:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no routing decision for {feedback_id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every event on one subject, decoded by the caller.
pub async fn subject_payloads(nats: &Nats, prefix: &str, subject: &str) -> Vec<Vec<u8>> {
    let stream = nats.events_stream(prefix).await;
    let mut out = Vec::new();
    let mut seq = 0;
    while let Ok(m) = stream.get_first_raw_message_by_subject(subject, seq).await {
        seq = m.sequence + 1;
        out.push(m.payload.to_vec());
    }
    out
}

/// The broker's raw JetStream publish rate on this machine (messages/s):
/// `n` 300-byte messages to a fresh file-backed R1 stream, with `in_flight`
/// acks awaited at once. The yardstick `make bench` measures closeloop against.
pub async fn raw_publish(nats: &Nats, n: usize, in_flight: usize) -> f64 {
    let js = async_nats::jetstream::new(nats.client().await);
    let name = format!("RAW{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let subject = format!("{}.m", name.to_ascii_lowercase());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; 300]);
    let t = Instant::now();
    // `in_flight` publishers, each a task of its own awaiting each ack, as
    // the command bench's clients are.
    let publishers = (0..in_flight).map(|k| {
        let (js, payload, subject) = (js.clone(), payload.clone(), subject.clone());
        let count = n / in_flight + usize::from(k < n % in_flight);
        tokio::spawn(async move {
            for _ in 0..count {
                js.publish(subject.clone(), payload.clone())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        })
    });
    futures::future::try_join_all(publishers)
        .await
        .expect("a publisher panicked");
    n as f64 / t.elapsed().as_secs_f64()
}

/// A real SMTP server (Debian's `python3-aiosmtpd`, which
/// `deploy/local/install-test-tools.sh` installs) storing every message it
/// accepts in a Maildir, on a free port; killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl SmtpSink {
    /// Accepts every message.
    pub fn start() -> SmtpSink {
        SmtpSink::with_handler("aiosmtpd.handlers.Mailbox")
    }

    /// Refuses `nobody@...` (550) and defers `flaky@...` once (451); see
    /// `tests/support/smtp_handlers.py`.
    pub fn picky() -> SmtpSink {
        SmtpSink::with_handler("smtp_handlers.Picky")
    }

    /// Accepts every message a quarter of a second after its data.
    pub fn slow() -> SmtpSink {
        SmtpSink::with_handler("smtp_handlers.Slow")
    }

    fn with_handler(handler: &str) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let port = free_addr().port();
        let child = std::process::Command::new("/usr/bin/python3")
            .env(
                "PYTHONPATH",
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support"),
            )
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", handler])
            .arg(dir.path().join("maildir"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "/usr/bin/python3 -m aiosmtpd (deploy/local/install-test-tools.sh installs it)",
            );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink { port, dir, child }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, parsed by Python's `email` package:
    /// `{"rcpt_to", "to", "from", "subject", "message_id", "text", "html"}`.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let script = r#"
import email, email.policy, json, mailbox, sys
out = []
box = mailbox.Maildir(sys.argv[1], create=True)
for key in sorted(box.keys()):
    m = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    text = m.get_body(preferencelist=("plain",))
    html = m.get_body(preferencelist=("html",))
    out.append({
        "rcpt_to": m.get("X-RcptTo"), "to": str(m.get("To")), "from": str(m.get("From")),
        "subject": str(m.get("Subject")), "message_id": str(m.get("Message-ID")),
        "cc": str(m.get("Cc")) if m.get("Cc") is not None else None,
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
    })
print(json.dumps(out))
"#;
        let out = std::process::Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(self.dir.path().join("maildir"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The messages whose subject contains `subject`: the ticket id their
    /// text names (`closeloop tickets show ID`) and when the sink stored
    /// them (from the Maildir file name, which records the arrival time to
    /// the microsecond).
    pub fn arrivals(&self, subject: &str) -> Vec<(String, std::time::SystemTime)> {
        let script = r#"
import email, email.policy, json, mailbox, re, sys
box = mailbox.Maildir(sys.argv[1], create=True)
out = []
for key in box.keys():
    m = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    if sys.argv[2] not in str(m.get("Subject")):
        continue
    text = m.get_body(preferencelist=("plain",)).get_content()
    found = re.search(r"closeloop tickets show (\S+)", text)
    secs, micros = key.split(".")[0], key.split(".")[1].split("P")[0].lstrip("M")
    out.append([found.group(1) if found else "", int(secs) * 1000000 + int(micros)])
print(json.dumps(out))
"#;
        let out = std::process::Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(self.dir.path().join("maildir"))
            .arg(subject)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Vec<(String, u64)> = serde_json::from_slice(&out.stdout).unwrap();
        v.into_iter()
            .map(|(t, us)| (t, std::time::UNIX_EPOCH + Duration::from_micros(us)))
            .collect()
    }

    /// Waits (up to 20 s) until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} messages arrived: {m:#?}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test virtual environment's Python (`.test-venv`, made by
/// `deploy/local/install-test-tools.sh`): Debian's packages plus
/// `standardwebhooks` and `jsonschema` from PyPI.
pub fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.test-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run deploy/local/install-test-tools.sh (make test does)",
        p.display()
    );
    p
}

/// A webhook receiver (`tests/support/webhook_receiver.py`) on a free port:
/// it answers by path (`/ok`, `/flaky/N`, `/limited/S`, `/gone`, `/slow/S`,
/// `/redirect`, `/slack`, `/teams`) and records every request; killed when
/// dropped.
pub struct WebhookReceiver {
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let mut child = std::process::Command::new("/usr/bin/python3")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/webhook_receiver.py"))
            .arg(&log)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("/usr/bin/python3 tests/support/webhook_receiver.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver prints its port");
        WebhookReceiver {
            port,
            log,
            _dir: dir,
            child,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far: `{"path", "headers", "body", "status", "at"}`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"].as_str().unwrap_or_default().starts_with(prefix))
            .collect()
    }

    /// Waits (up to `within`) until `n` requests went to paths starting
    /// with `prefix`, and returns them.
    pub async fn wait_for(
        &self,
        prefix: &str,
        n: usize,
        within: Duration,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.requests_to(prefix);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests to {prefix} after {within:?}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks deliveries `(secret, request)` with the Standard Webhooks
/// reference implementation and the payload's JSON Schema
/// (`tests/support/verify_webhooks.py`): one `Err(reason)` per delivery
/// that fails either.
pub fn verify_webhooks(deliveries: &[(String, serde_json::Value)]) -> Vec<Result<(), String>> {
    use std::io::Write;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let input = serde_json::json!({
        "schema": root.join("../docs/webhook-payload.schema.json"),
        "deliveries": deliveries.iter().map(|(secret, r)| serde_json::json!({
            "secret": secret, "headers": r["headers"], "body": r["body"],
        })).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(venv_python())
        .arg(root.join("support/verify_webhooks.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verify_webhooks.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["ok"].as_bool() == Some(true) {
                Ok(())
            } else {
                Err(v["error"].as_str().unwrap_or_default().to_string())
            }
        })
        .collect()
}
