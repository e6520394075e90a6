//! A fresh install on Kubernetes: every role starts at the same instant, as
//! separate processes, against a fresh database and an empty broker. Each
//! must come up (migrations and stream provisioning are safe under
//! concurrent starts), again and again.

use std::time::{Duration, Instant};

use closeloop_tests::{Backend, Nats, RoleProcess, TestDb, http_get, unique_prefix};

const ROLES: [&str; 3] = ["ingestion", "routing", "ticketing"];
const ROUNDS: usize = 6;

fn start(role: &'static str, nats: &str, db: &str, prefix: &str) -> RoleProcess {
    RoleProcess::start(
        env!("CARGO_BIN_EXE_closeloop"),
        role,
        (nats, db, prefix),
        &[],
    )
}

/// Waits until every role answers `/readyz` 200; fails with the stderr of
/// any role that exited instead.
async fn all_ready(roles: &mut [RoleProcess], round: usize) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut ready = vec![false; roles.len()];
    while ready.iter().any(|r| !r) {
        for (i, role) in roles.iter_mut().enumerate() {
            if ready[i] {
                continue;
            }
            if let Some(status) = role.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = role.child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                panic!(
                    "round {round}: role {} exited ({status}) during a concurrent start:\n{err}",
                    role.role
                );
            }
            if let Some((200, _)) = http_get(role.http, "/readyz").await {
                ready[i] = true;
            }
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: roles not ready: {:?}",
            roles
                .iter()
                .zip(&ready)
                .filter(|(_, r)| !**r)
                .map(|(role, _)| role.role)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn roles_started_together_all_come_up(backend: Backend) {
    let nats = Nats::start();
    for round in 0..ROUNDS {
        // A fresh database and a fresh prefix (so fresh streams) each round.
        let db = TestDb::new(backend).await;
        let prefix = unique_prefix();
        let mut roles: Vec<RoleProcess> = ROLES
            .iter()
            .map(|r| start(r, &nats.url(), &db.url, &prefix))
            .collect();
        all_ready(&mut roles, round).await;
        for mut r in roles {
            r.child.kill().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_roles_started_together_all_come_up() {
    roles_started_together_all_come_up(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_roles_started_together_all_come_up() {
    roles_started_together_all_come_up(Backend::Postgres).await;
}
