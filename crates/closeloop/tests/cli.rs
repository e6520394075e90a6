//! The `closeloop tickets` CLI, run as a real process against a real server.

use std::process::Output;

use closeloop_tests::{Backend, Nats, TestDb, spawn_app, unique_prefix};
use serde_json::Value;

async fn cli(server: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"));
    cmd.arg("tickets").arg("--server").arg(server).args(args);
    cmd.env_remove("CLOSELOOP_SERVER");
    cmd.output().await.unwrap()
}

fn json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_lifecycle_from_the_command_line() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let s = app.grpc_url();

    let open = [
        "open",
        "--account",
        "ACME-001",
        "--owner-email",
        "dana@vendor.example",
        "--program",
        "relationship-nps",
        "--title",
        "Upgrade broke workflows",
        "-o",
        "json",
        "--request-id",
        "phone-call-1",
    ];
    let t = json(&cli(&s, &open).await);
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["status"], "open");
    assert_eq!(t["owner_email"], "dana@vendor.example");
    assert!(humantime::parse_rfc3339(t["opened_at"].as_str().unwrap()).is_ok());

    // Retrying with the same --request-id gives the same ticket.
    let again = json(&cli(&s, &open).await);
    assert_eq!(again["id"], t["id"]);

    for args in [
        vec![
            "contact",
            &id,
            "--channel",
            "phone",
            "--summary",
            "Called Dana",
        ],
        vec!["note", &id, "--text", "Wants a roadmap session"],
        vec![
            "reassign",
            &id,
            "--owner-email",
            "lee@vendor.example",
            "--reason",
            "Dana on leave",
        ],
        vec!["reply", &id, "--text", "Thanks for calling"],
    ] {
        let mut a = args.clone();
        a.extend(["-o", "json"]);
        json(&cli(&s, &a).await);
    }
    let closed = json(
        &cli(
            &s,
            &[
                "close",
                &id,
                "--root-cause-category",
                "product",
                "--root-cause",
                "SSO regression in 4.2",
                "--actions",
                "Hotfix shipped",
                "--opportunity",
                "upsell:25000",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["closure"]["opportunity"]["amount"], 25000.0);
    assert_eq!(closed["owner_email"], "lee@vendor.example");

    let shown = json(&cli(&s, &["show", &id, "-o", "json"]).await);
    assert_eq!(shown["status"], "closed");
    assert_eq!(shown["activity"].as_array().unwrap().len(), 6);

    let list = json(&cli(&s, &["list", "--status", "closed", "-o", "json"]).await);
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_page_token"], Value::Null);

    // Readable output for people.
    let table = cli(&s, &["list"]).await;
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains(&id) && text.contains("closed"));

    let ids = cli(&s, &["list", "-o", "id"]).await;
    assert_eq!(String::from_utf8(ids.stdout).unwrap().trim(), id);

    let reopened = json(
        &cli(
            &s,
            &["reopen", &id, "--reason", "Broke again", "-o", "json"],
        )
        .await,
    );
    assert_eq!(reopened["status"], "open");
    app.stop().await.unwrap();
}

/// `closeloop tickets list | head` and the like: the reader goes away; the
/// CLI must end quietly, not panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_cli_quietly() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let s = app.grpc_url();
    let open = ["open", "--account", "A-1", "--owner-email", "a@b.io"];
    json(&cli(&s, &[&open[..], &["-o", "json"]].concat()).await);
    for args in [vec!["list"], vec!["list", "-o", "json"]] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("tickets")
            .arg("--server")
            .arg(&s)
            .args(&args)
            .env_remove("CLOSELOOP_SERVER")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the CLI writes a byte.
        drop(child.stdout.take());
        let o = child.wait_with_output().await.unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
        assert!(e.is_empty(), "{e}");
    }
}

/// Timestamps in `-o json` have the microseconds gRPC answers and event
/// headers carry, so scripts can join them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_timestamps_have_full_precision() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.seed_ticket_directory().await;
    let s = app.grpc_url();
    let t = json(
        &cli(
            &s,
            &[
                "open",
                "--account",
                "A-1",
                "--owner-email",
                "a@b.io",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let opened = t["opened_at"].as_str().unwrap();
    let seq = t["sequence"].as_u64().unwrap();
    let stream = nats.events_stream(&prefix).await;
    let msg = stream.get_raw_message(seq).await.unwrap();
    let header = msg
        .headers
        .get("Closeloop-Occurred-At")
        .unwrap()
        .to_string();
    assert_eq!(opened, header);
    let frac = opened.trim_end_matches('Z').rsplit('.').next().unwrap();
    assert_eq!(frac.len(), 6, "{opened}");
    let shown = json(&cli(&s, &["show", t["id"].as_str().unwrap(), "-o", "json"]).await);
    assert_eq!(shown["opened_at"], opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_the_server_message_and_exit_non_zero() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let s = app.grpc_url();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();

    let o = cli(&s, &["show", "not-a-ticket"]).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("ticket_id: \"not-a-ticket\" is not a ticket id"),
        "{}",
        stderr(&o)
    );

    let o = cli(&s, &["show", "0b6f3a52-8c1e-5d2a-9f00-1c2d3e4f5a6b"]).await;
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("does not exist"));

    let t = json(
        &cli(
            &s,
            &[
                "open",
                "--account",
                "A-1",
                "--owner-email",
                "a@b.io",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let id = t["id"].as_str().unwrap();
    let o = cli(
        &s,
        &[
            "close",
            id,
            "--root-cause-category",
            "product",
            "--root-cause",
            "x",
            "--actions",
            "y",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(5));
    assert!(stderr(&o).contains("log a contact"), "{}", stderr(&o));

    let o = cli(
        &s,
        &[
            "close",
            id,
            "--root-cause-category",
            "weather",
            "--root-cause",
            "",
            "--actions",
            "y",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(
        e.contains("root_cause_category: \"weather\" is not a root-cause category"),
        "{e}"
    );
    assert!(e.contains("root_cause: is required"), "{e}");

    // An owner outside the directory: every unknown reference, exit 4.
    let o = cli(
        &s,
        &["open", "--account", "A-9", "--owner-email", "ghost@b.io"],
    )
    .await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("account_id: A-9 is not an account in the directory"),
        "{e}"
    );
    assert!(e.contains("owner_email: ghost@b.io is not a person"), "{e}");

    // Caught before any network call.
    let o = cli(&s, &["contact", id, "--channel", "fax", "--summary", "x"]).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("--channel \"fax\" is not a channel"));

    app.stop().await.unwrap();
    let o = cli(&s, &["list"]).await;
    assert_eq!(o.status.code(), Some(6));
    assert!(
        stderr(&o).contains("cannot reach closeloop"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn programs_validate_reports_every_error_and_exits_3() {
    let bin = env!("CARGO_BIN_EXE_closeloop");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/programs.yaml"
    );
    let ok = tokio::process::Command::new(bin)
        .args(["programs", "validate", example])
        .output()
        .await
        .unwrap();
    assert!(ok.status.success());
    let out = String::from_utf8(ok.stdout).unwrap();
    assert!(
        out.contains("valid: 3 programs, 8 workflows, version "),
        "{out}"
    );
    assert!(out.contains("rnps-detractor"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("programs.yaml");
    std::fs::write(
        &bad,
        "version: 1\nprograms:\n  - id: p\n    name: P\n    metric: nps\n    metric_question: nps\n    \
         fallback_owner: x\n    questions: [{id: nps, kind: nps}]\n    workflows:\n      - \
         {id: w, name: W, when: 'answers.nsp < 7', owner: {role: csm}, guide: {title: G}}\n",
    )
    .unwrap();
    let o = tokio::process::Command::new(bin)
        .args(["programs", "validate"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("programs[0](p).fallback_owner:"), "{err}");
    assert!(
        err.contains("programs[0](p).workflows[0](w).when: refers to \"nsp\""),
        "{err}"
    );
    assert!(err.trim_end().ends_with("2 errors"), "{err}");

    let missing = tokio::process::Command::new(bin)
        .args(["programs", "validate", "/nonexistent/programs.yaml"])
        .output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("cannot read"), "{err}");
    // The file is named once per line, not once by the CLI and again as
    // the error's location.
    assert!(
        err.lines()
            .all(|l| l.matches("/nonexistent/programs.yaml").count() == 1),
        "{err}"
    );
}

/// A file a command reads (a directory to import, a webhook secret) is read
/// before the server is asked: an unreadable one is the error, exit 3, even
/// when no server answers (not exit 6, "cannot reach").
#[tokio::test]
async fn files_are_read_before_the_server_is_asked() {
    let bin = env!("CARGO_BIN_EXE_closeloop");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    for (args, says) in [
        (
            vec![
                "directory",
                "--server",
                &server,
                "import",
                "/nonexistent/directory.yaml",
            ],
            "cannot read /nonexistent/directory.yaml",
        ),
        (
            vec![
                "webhooks",
                "--server",
                &server,
                "add",
                "https://crm.example/hook",
                "--secret-file",
                "/nonexistent/secret",
            ],
            "cannot read --secret-file /nonexistent/secret",
        ),
    ] {
        let o = tokio::process::Command::new(bin)
            .args(&args)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_import_is_idempotent_and_reports_bad_records() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    let s = app.grpc_url();
    let run = |args: Vec<String>| {
        let s = s.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
                .arg("directory")
                .arg("--server")
                .arg(&s)
                .args(args)
                .output()
                .await
                .unwrap()
        }
    };
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/examples");
    let yaml = format!("{examples}/directory.yaml");

    let o = run(vec!["import".into(), yaml.clone()]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains("21 upserted, 0 unchanged, 0 rejected"),
        "{out}"
    );

    let o = run(vec!["import".into(), yaml]).await;
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains("0 upserted, 21 unchanged, 0 rejected"),
        "{out}"
    );

    let o = run(vec!["import".into(), format!("{examples}/accounts.csv")]).await;
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("1 upserted"), "{out}");

    // Reads its own write eventually (the CLI lookup does not wait).
    let mut shown = String::new();
    for _ in 0..50 {
        let o = run(vec!["account".into(), "INITECH-003".into()]).await;
        if o.status.success() {
            shown = String::from_utf8(o.stdout).unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        shown.contains("csm") && shown.contains("dana.li@vendor.example"),
        "{shown}"
    );
    assert!(
        !shown.contains("solutions_consultant"),
        "empty CSV cells are not roles: {shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "people:\n  - {email: ok@vendor.example, name: Ok}\n  - {email: nope, name: Bad}\n\
         teams:\n  - {id: Empty Team, members: []}\n",
    )
    .unwrap();
    let o = run(vec!["import".into(), bad.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("people[1] (nope): invalid request: person.email"),
        "{err}"
    );
    assert!(
        err.contains("teams[0] (Empty Team): invalid request: team.id"),
        "{err}"
    );
    assert!(
        String::from_utf8(o.stdout)
            .unwrap()
            .contains("1 upserted, 0 unchanged, 2 rejected")
    );

    let o = run(vec!["team".into(), "no-such-team".into()]).await;
    assert_eq!(o.status.code(), Some(4));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_intake_parks_bad_messages_and_redrive_retries_them() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    let intake = |args: Vec<String>| {
        let (url, prefix) = (nats.url(), prefix.clone());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
                .args(["intake", "--nats-url", &url, "--prefix", &prefix])
                .args(args)
                .output()
                .await
                .unwrap()
        }
    };
    let rejected = || async {
        let o = intake(vec!["rejected".into(), "-o".into(), "json".into()]).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["rejected"].as_array().unwrap().clone()
    };
    let doc = serde_json::json!({
      "response_id": "N-1", "source": "qualtrics", "program": "relationship-nps",
      "account_id": "ACME-001", "submitted_at": "2026-11-02T09:30:00Z",
      "answers": {"nps": 2, "comment": "too slow"}
    });
    let js = async_nats::jetstream::new(nats.client().await);
    let subject = format!("{prefix}.intake.feedback");
    for payload in [doc.to_string(), "not json".to_string()] {
        js.publish(subject.clone(), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let mut parked = Vec::new();
    for _ in 0..100 {
        parked = rejected().await;
        if parked.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(parked.len(), 2, "{parked:?}");
    let unknown = parked
        .iter()
        .find(|r| {
            r["reason"]
                .as_str()
                .unwrap()
                .contains("/account_id: ACME-001 is not an account in the directory")
        })
        .expect("unknown account parked with its reason");
    assert!(
        parked
            .iter()
            .any(|r| r["reason"].as_str().unwrap().starts_with("malformed JSON"))
    );
    assert_eq!(unknown["original_subject"], subject);

    // The same through `closeloop dlq`, by consumer; replay is for event
    // consumers only (intake messages are redriven), unknown consumers are 4.
    let dlq = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .args(["dlq", "--nats-url", &nats.url(), "--prefix", &prefix])
            .args(args)
            .output()
            .unwrap()
    };
    let o = dlq(&["list", "--consumer", "feedback-intake", "-o", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dead_letters"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["dead_letters"][0]["consumer"], "feedback-intake");
    let o = dlq(&["list", "--consumer", "routing", "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["dead_letters"].as_array().unwrap().is_empty(), "{v}");
    // A name that is no consumer's is not taken for one without dead
    // letters: exit 4, naming the durable consumers there are.
    let o = dlq(&["list", "--consumer", "routnig"]);
    assert_eq!(o.status.code(), Some(4));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no consumer \"routnig\"")
            && err.contains("feedback-intake")
            && err.contains(", routing"),
        "{err}"
    );
    let o = dlq(&["replay", "--consumer", "feedback-intake", "--from", "1"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("dlq redrive"));
    let o = dlq(&["replay", "--consumer", "nobody", "--from", "1"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = dlq(&["replay", "--consumer", "routing", "--from", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("replays from sequence 1"));

    // Fix the cause, then redrive.
    app.seed_account("ACME-001", "dana.li@vendor.example").await;
    let seq = unknown["sequence"].as_u64().unwrap().to_string();
    let o = intake(vec!["redrive".into(), seq.clone()]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Stored by the intake: the same document over HTTP is now a duplicate.
    let mut status = String::new();
    for _ in 0..100 {
        let (_, _, body) =
            closeloop_tests::http_post(app.http_addr, "/v1/feedback", doc.to_string().as_bytes())
                .await;
        status = serde_json::from_str::<Value>(&body).unwrap()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if status == "duplicate" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "duplicate");
    let left = rejected().await;
    assert_eq!(left.len(), 1);
    assert!(
        left[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON")
    );

    let o = intake(vec!["redrive".into(), seq]).await;
    assert_eq!(o.status.code(), Some(4), "a redriven letter is gone");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_submit_reports_each_document_and_exits_3_on_invalid_ones() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.import_example_directory().await;
    let url = format!("http://{}", app.http_addr);
    let examples = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/feedback"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"response_id": "X1", "source": "s", "program": "relationship-nps",
             "account_id": "ACME-001", "submitted_at": "2026-11-02T09:30:00Z",
             "answers": {"nps": 11}}]"#,
    )
    .unwrap();
    let submit = |files: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
                .args(["feedback", "submit", "--url", &url])
                .args(files)
                .env_remove("CLOSELOOP_HTTP_URL")
                .output()
                .await
                .unwrap()
        }
    };
    let good = format!("{examples}/relationship-nps-detractor.json");
    let o = submit(vec![good.clone()]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(": received "));
    let o = submit(vec![good, bad.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(3));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(": duplicate "), "{out}");
    assert!(
        out.contains("bad.json[0]: invalid") && out.contains("/answers/nps"),
        "{out}"
    );
    // Server down: exit 6.
    let down = tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["feedback", "submit", "--url", "http://127.0.0.1:1"])
        .arg(bad)
        .output()
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(6));
}

/// `closeloop status`: one line per projector and consumer, with position
/// and lag, from a running process's /readyz and /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_projector_and_consumer_with_its_lag() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.import_example_directory().await;
    // One message the intake cannot read: parked by feedback-intake.
    let js = async_nats::jetstream::new(nats.client().await);
    js.publish(format!("{prefix}.intake.feedback"), "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let doc = closeloop_tests::example("feedback/relationship-nps-detractor.json");
    let (s, _, body) =
        closeloop_tests::http_post(app.http_addr, "/v1/feedback", &std::fs::read(doc).unwrap())
            .await;
    assert_eq!(s, 202, "{body}");
    let url = format!("http://{}", app.http_addr);
    let status = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_closeloop"));
        cmd.arg("status").arg("--url").arg(&url).args(args);
        cmd.env_remove("CLOSELOOP_HTTP_URL")
            .env_remove("CLOSELOOP_NATS_URL")
            .env_remove("CLOSELOOP_PREFIX");
        cmd.output().unwrap()
    };
    // Wait until routing and ticketing have consumed the response.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let v = loop {
        let o = status(&["-o", "json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let all: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(all["processes"].as_array().unwrap().len(), 1, "{all}");
        let v = all["processes"][0].clone();
        let consumer = |n: &str| {
            v["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["consumer"] == n)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let responses_projected =
            v["projectors"].as_array().unwrap().iter().any(|p| {
                p["projector"] == "analytics_responses" && p["position"].as_u64() > Some(0)
            });
        if consumer("ticketing-routes")["done"].as_u64() >= Some(1) && responses_projected {
            assert!(consumer("routing")["position"].as_u64().unwrap() > 0, "{v}");
            assert_eq!(consumer("routing")["pending"], 0, "{v}");
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(v["ready"], true);
    assert_eq!(
        v["roles"],
        "ingestion, routing, ticketing, escalation, notification, analytics"
    );
    let projectors: Vec<_> = v["projectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["projector"].as_str().unwrap().to_string())
        .collect();
    assert!(
        projectors.contains(&"ticket_state".to_string()),
        "{projectors:?}"
    );
    // The analytics views' projectors too, each with its position.
    for name in [
        "analytics_tickets",
        "analytics_sla",
        "analytics_responses",
        "analytics_accounts",
        "analytics_routing",
    ] {
        let p = v["projectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["projector"] == name)
            .unwrap_or_else(|| panic!("{name} is not in {projectors:?}"));
        assert!(p["position"].as_u64().is_some(), "{p}");
    }
    let text = status(&[]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with("roles"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("consumer") && l.contains("routing") && l.contains("pending 0")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("projector") && l.contains("ticket_state")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("projector") && l.contains("analytics_responses")),
        "{text}"
    );
    // With the broker: what each consumer has parked in the dead-letter stream.
    let nats_url = nats.url();
    let with_dlq = ["--nats-url", nats_url.as_str(), "--prefix", prefix.as_str()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let o = status(&[&with_dlq[..], &["-o", "json"]].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        if v["parked"]["feedback-intake"] == 1 {
            assert!(v["parked"].get("routing").is_none(), "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = status(&with_dlq);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("dlq")
            && l.contains("feedback-intake")
            && l.ends_with("parked 1")),
        "{text}"
    );
    // Several processes (one per role on Kubernetes): one block each; one
    // that does not answer is reported, and the exit code says so.
    let several = status(&["--url", "http://127.0.0.1:1"]);
    assert_eq!(several.status.code(), Some(6));
    let text = String::from_utf8_lossy(&several.stdout);
    assert!(text.starts_with("roles"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("process")
            && l.contains("127.0.0.1:1")
            && l.contains("UNREACHABLE")),
        "{text}"
    );
    // Nothing listening: exit 6.
    app.stop().await.unwrap();
    let down = status(&[]);
    assert_eq!(down.status.code(), Some(6));

    // Restarted, with nothing new to read: each consumer shows where its
    // durable stands, not 0 until its next message.
    let routed_to = v["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consumer"] == "routing")
        .and_then(|c| c["position"].as_u64())
        .unwrap();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    let url = format!("http://{}", app.http_addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .args(["status", "--url", &url, "-o", "json"])
            .env_remove("CLOSELOOP_HTTP_URL")
            .output()
            .unwrap();
        let all: Value = serde_json::from_slice(&o.stdout).unwrap();
        let routing = all["processes"][0]["consumers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["consumer"] == "routing").cloned())
            .unwrap_or(Value::Null);
        if routing["position"].as_u64() == Some(routed_to) {
            assert_eq!(routing["pending"], 0, "{routing}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{all}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.stop().await.unwrap();
}

/// A bad command line is refused before anything is connected to, with
/// exit code 2 and the flag named: `serve` with an unknown role or a
/// replica count JetStream does not have, a report asking for no tickets.
#[test]
fn a_bad_command_line_exits_2_naming_the_flag() {
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_closeloop"));
        cmd.args(args);
        for v in ["CLOSELOOP_ROLES", "CLOSELOOP_STREAM_REPLICAS"] {
            cmd.env_remove(v);
        }
        cmd.output().unwrap()
    };
    for (args, says) in [
        (
            &["serve", "--roles", "ticketing,bogus"][..],
            "unknown role \"bogus\"",
        ),
        (&["serve", "--stream-replicas", "0"], "0 is not in 1..=5"),
        (&["serve", "--stream-replicas", "6"], "6 is not in 1..=5"),
        (&["report", "quality", "--best", "0"], "'--best <N>'"),
        (&["report", "quality", "--worst", "0"], "'--worst <N>'"),
    ] {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn notification_templates_are_checked_before_a_start() {
    let check = |dir: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_closeloop"));
        cmd.args(["notifications", "check-templates"]);
        cmd.env_remove("CLOSELOOP_TEMPLATES");
        if let Some(d) = dir {
            cmd.arg("--templates").arg(d);
        }
        cmd.output().unwrap()
    };
    let ok = check(None);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("templates ok"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rnps-detractor")).unwrap();
    std::fs::write(
        dir.path().join("rnps-detractor/body.html"),
        "<p>{{ ticket.title }}</p>\n<p>{{ feedback.scroe }}</p>",
    )
    .unwrap();
    let bad = check(Some(dir.path()));
    assert_eq!(bad.status.code(), Some(3));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("rnps-detractor/body.html"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_that_gave_up_are_listed_and_redriven() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = closeloop_tests::SmtpSink::picky();
    let app = closeloop_tests::spawn_app_configured(
        &nats.url(),
        &db.url,
        &unique_prefix(),
        None,
        closeloop_notification::role::Config {
            smtp_url: Some(sink.url()),
            mail_from: "cx@vendor.example".into(),
            ..Default::default()
        },
    )
    .await;
    app.seed_ticket_directory().await;
    app.seed_person("nobody@vendor.example", None).await;
    let s = app.grpc_url();
    let notifications = |args: Vec<String>| {
        let s = s.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
                .args(["notifications", "--server", &s])
                .args(args)
                .env_remove("CLOSELOOP_SERVER")
                .output()
                .await
                .unwrap()
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let open = |owner: &str, request: &str| {
        vec![
            "open",
            "--account",
            "ACME-001",
            "--owner-email",
            owner,
            "--request-id",
            request,
            "-o",
            "id",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let refused_ticket = {
        let a = open("nobody@vendor.example", "n-1");
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = cli(&s, &a).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    {
        let a = open("dana@vendor.example", "n-2");
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        assert!(cli(&s, &a).await.status.success());
    }
    sink.wait_for(1).await;

    let failed = || async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let v = json(&notifications(args(&["failed", "-o", "json"])).await);
            let list = v["notifications"].as_array().unwrap().clone();
            if !list.is_empty() {
                return list;
            }
            assert!(std::time::Instant::now() < deadline, "nothing gave up");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let list = failed().await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let n = &list[0];
    assert_eq!(n["ticket_id"], refused_ticket.as_str());
    assert_eq!(n["recipient"], "nobody@vendor.example");
    assert_eq!(n["status"], "gave_up");
    assert_eq!(n["attempts"], 1);
    assert!(n["last_error"].as_str().unwrap().contains("550"), "{n}");
    let id = n["id"].as_str().unwrap().to_string();

    let table = notifications(args(&["failed"])).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("550")),
        "{table}"
    );

    // Redriven: a new round; refused again, so it gives up after attempt 2.
    let r = notifications(args(&["redrive", &id])).await;
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let list = failed().await;
        if list[0]["attempts"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Only what gave up can be redriven; unknown and malformed ids.
    let delivered = {
        let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
            .args([
                "tickets",
                "--server",
                &s,
                "list",
                "--owner-email",
                "dana@vendor.example",
                "-o",
                "id",
            ])
            .output()
            .await
            .unwrap();
        let ticket = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let shown = json(&cli(&s, &["show", &ticket, "-o", "json"]).await);
        shown["notifications"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = notifications(args(&["redrive", &delivered])).await;
    assert_eq!(
        r.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("only one that gave up"));
    let r = notifications(args(&["redrive", "0b6f0c5e-1111-5222-8333-944455556666"])).await;
    assert_eq!(r.status.code(), Some(4));
    let r = notifications(args(&["redrive", "not-an-id"])).await;
    assert_eq!(r.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&r.stderr).contains("notification_id"));
    app.stop().await.unwrap();
}

/// `closeloop webhooks`: add (a bad URL, event type or secret file refused
/// with exit 3 and the field), list, test (the receiver's answer), rotate,
/// remove; an unknown id is exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_managed_from_the_command_line() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let rx = closeloop_tests::WebhookReceiver::start();
    let app = closeloop_tests::spawn_app_configured(
        &nats.url(),
        &db.url,
        &unique_prefix(),
        None,
        closeloop_notification::role::Config {
            outbound_allow: "127.0.0.0/8".into(),
            ..Default::default()
        },
    )
    .await;
    let s = app.grpc_url();
    let webhooks = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"));
        cmd.args(["webhooks", "--server", &s]).args(args);
        cmd.env_remove("CLOSELOOP_SERVER");
        cmd.output()
    };
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();

    let bad = webhooks(&[
        "add",
        "http://10.0.0.7/hook",
        "--events",
        "ticket.opened,ticket.burned",
    ])
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(3), "{}", err(&bad));
    assert!(err(&bad).contains("url: "), "{}", err(&bad));
    assert!(err(&bad).contains("private"), "{}", err(&bad));
    assert!(
        err(&bad).contains("events[1]: \"ticket.burned\""),
        "{}",
        err(&bad)
    );
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "hunter2\n").unwrap();
    let bad_secret = webhooks(&[
        "add",
        &rx.url("/ok/cli"),
        "--secret-file",
        secret_file.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert_eq!(bad_secret.status.code(), Some(3));
    assert!(
        err(&bad_secret).contains("secret: "),
        "{}",
        err(&bad_secret)
    );
    let missing = webhooks(&["add", &rx.url("/ok/cli"), "--secret-file", "/nonexistent/s"])
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
    assert!(err(&missing).contains("--secret-file"), "{}", err(&missing));

    let added = json(
        &webhooks(&[
            "add",
            &rx.url("/ok/cli"),
            "--events",
            "ticket.closed",
            "--description",
            "CRM",
            "-o",
            "json",
        ])
        .await
        .unwrap(),
    );
    let id = added["id"].as_str().unwrap().to_string();
    let secret = added["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{added}");
    assert_eq!(added["events"], serde_json::json!(["ticket.closed"]));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = webhooks(&["list"]).await.unwrap();
        let table = String::from_utf8_lossy(&list.stdout).to_string();
        if table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("active") && l.contains("ticket.closed"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{table}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let tested = webhooks(&["test", &id]).await.unwrap();
    let out = String::from_utf8_lossy(&tested.stdout).to_string();
    assert!(tested.status.success(), "{out}{}", err(&tested));
    assert!(out.starts_with("delivered: HTTP 204"), "{out}");
    let got = rx
        .wait_for("/ok/cli", 1, std::time::Duration::from_secs(5))
        .await;
    let body: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "webhook.test");
    assert_eq!(
        closeloop_tests::verify_webhooks(&[(secret.clone(), got[0].clone())]),
        [Ok(())]
    );

    let rotated = json(
        &webhooks(&["rotate-secret", &id, "--keep-old", "1h", "-o", "json"])
            .await
            .unwrap(),
    );
    assert_ne!(rotated["secret"], secret.as_str());
    assert!(rotated["previous_secret_until"].is_string(), "{rotated}");

    let removed = webhooks(&["remove", &id]).await.unwrap();
    assert!(removed.status.success(), "{}", err(&removed));
    let again = webhooks(&["test", &id]).await.unwrap();
    assert_eq!(again.status.code(), Some(5), "{}", err(&again));
    let unknown = webhooks(&["remove", "6f1c0d2e-0000-4000-8000-000000000000"])
        .await
        .unwrap();
    assert_eq!(unknown.status.code(), Some(4), "{}", err(&unknown));
    let not_id = webhooks(&["enable", "nope"]).await.unwrap();
    assert_eq!(not_id.status.code(), Some(3), "{}", err(&not_id));
    app.stop().await.unwrap();
}

/// `closeloop` with any subcommand, against `server`.
async fn run(server: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_closeloop"));
    cmd.args(args).arg("--server").arg(server);
    cmd.env_remove("CLOSELOOP_SERVER");
    cmd.output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_reports_waits_and_the_clock_from_the_command_line() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = closeloop_tests::spawn_app_with(
        &nats.url(),
        &db.url,
        &unique_prefix(),
        closeloop_tests::AppOptions {
            clock: closeloop_server::ClockConfig::Simulated {
                start: Some(humantime::parse_rfc3339("2026-01-05T08:00:00Z").unwrap()),
            },
            ..Default::default()
        },
    )
    .await;
    app.seed_ticket_directory().await;
    let s = app.grpc_url();
    let t = json(
        &cli(
            &s,
            &[
                "open",
                "--account",
                "ACME-001",
                "--owner-email",
                "dana@vendor.example",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let id = t["id"].as_str().unwrap().to_string();

    // The clock: shown, moved, and never backwards.
    let o = run(&s, &["admin", "clock"]).await;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "2026-01-05T08:00:00.000000Z (simulated clock)"
    );
    let o = run(&s, &["admin", "clock", "advance", "3d"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "2026-01-08T08:00:00.000000Z (simulated clock)"
    );
    let o = run(&s, &["admin", "clock", "set", "2026-01-06T00:00:00Z"]).await;
    assert_eq!(o.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("only moves forward"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&s, &["admin", "clock", "advance", "soon"]).await;
    assert_eq!(o.status.code(), Some(3));

    // The first-contact breach shows on the ticket and in the report.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let shown = loop {
        let v = json(&cli(&s, &["show", &id, "-o", "json"]).await);
        if v["sla"]["clocks"][0]["state"] == "breached" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(shown["sla"]["clocks"][0]["clock"], "first_contact");
    assert_eq!(
        shown["sla"]["clocks"][0]["warned_pct"],
        serde_json::json!([50, 75])
    );
    assert_eq!(shown["sla"]["clocks"][0]["remaining_secs"], -86_400);
    let table = cli(&s, &["show", &id]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("first_contact #1 breached"), "{table}");
    assert!(table.contains("1d 0h overdue"), "{table}");

    let report = run(&s, &["reports", "weekly", "-o", "json"]).await;
    let report = json(&report);
    assert_eq!(report["tickets"], 1, "{report}");
    assert_eq!(report["owners"][0]["owner"], "dana@vendor.example");
    assert_eq!(
        report["owners"][0]["tickets"][0]["reasons"],
        serde_json::json!(["breached"])
    );
    let csv = run(&s, &["reports", "weekly", "-o", "csv"]).await;
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(csv.starts_with("owner,ticket_id,"), "{csv}");
    assert!(
        csv.contains(&format!("dana@vendor.example,{id},ACME-001")),
        "{csv}"
    );
    let o = run(&s, &["reports", "weekly", "--as-of", "yesterday"]).await;
    assert_eq!(o.status.code(), Some(3));
    // A region no ticket has is said to be one (its accounts have no region
    // here), not only reported as needing nothing.
    let o = run(&s, &["reports", "weekly", "--region", "Atlantis"]).await;
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Atlantis, as of"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no ticket is in region \"Atlantis\"; no ticket has a region"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Pending timers, and a refused recompute.
    let o = run(&s, &["sla", "timers", "--ticket", &id]).await;
    let timers = String::from_utf8_lossy(&o.stdout);
    assert!(timers.contains("untouched/1/level1"), "{timers}");
    assert!(timers.contains("closure/1/warn50"), "{timers}");
    let o = run(&s, &["sla", "recompute", "--workflow", "no-such-workflow"]).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("workflow_id: no workflow"));
    let o = run(&s, &["sla", "recompute", "--workflow", "rnps-detractor"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "workflow rnps-detractor: 0 open tickets recomputed, 0 unchanged"
    );

    // Waiting on the customer, and the refusals around it.
    json(
        &cli(
            &s,
            &["wait", &id, "--reason", "waiting for logs", "-o", "json"],
        )
        .await,
    );
    let o = cli(&s, &["wait", &id, "--reason", "again"]).await;
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already waits on the customer"));
    let v = json(&cli(&s, &["show", &id, "-o", "json"]).await);
    assert_eq!(v["waiting_reason"], "waiting for logs");
    json(&cli(&s, &["resume", &id, "-o", "json"]).await);
    let o = cli(&s, &["resume", &id]).await;
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not waiting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_wall_clock_is_refused() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    let o = run(&app.grpc_url(), &["admin", "clock", "advance", "1d"]).await;
    assert_eq!(o.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("start it with --clock simulated"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&app.grpc_url(), &["admin", "clock"]).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("(wall clock)"));
    // --clock-start without a simulated clock is a bad start.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["serve", "--clock-start", "2026-01-05T08:00:00Z"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--clock-start needs --clock simulated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_reports_and_rebuilds_from_the_command_line() {
    use closeloop_proto::v1;
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let s = app.grpc_url();
    let mut c = app.tickets().await;
    let t = c
        .open_ticket(v1::OpenTicketRequest {
            request_id: "cli-a-1".into(),
            account_id: "ACME-001".into(),
            owner_email: "dana@vendor.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    c.log_contact(v1::LogContactRequest {
        request_id: "cli-a-2".into(),
        ticket_id: t.id.clone(),
        channel: v1::ContactChannel::Phone as i32,
        summary: "called".into(),
        actor: String::new(),
    })
    .await
    .unwrap();
    c.close_ticket(v1::CloseTicketRequest {
        request_id: "cli-a-3".into(),
        ticket_id: t.id.clone(),
        root_cause_category: "product".into(),
        root_cause: "too short".into(),
        actions_taken: "also short".into(),
        opportunity: None,
        actor: String::new(),
    })
    .await
    .unwrap();

    // The worst closures, with what they missed (views follow within a
    // second: ask until the close is in).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let worst = loop {
        let o = run(&s, &["report", "quality", "--worst", "5", "-o", "json"]).await;
        let v = json(&o);
        if v["lines"].as_array().is_some_and(|l| !l.is_empty()) {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let line = &worst["lines"][0];
    assert_eq!(line["ticket_id"], t.id.as_str());
    assert_eq!(line["score"], "60", "{worst}");
    assert_eq!(line["missed"], "root_cause actions");

    // CSV: a header, a row per owner, a total line.
    let o = run(&s, &["report", "closure", "--by", "owner", "-o", "csv"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("owner,met,missed,pending,rate"),
        "{csv}"
    );
    assert!(
        lines[1].starts_with("dana@vendor.example,1,0,0,100"),
        "{csv}"
    );
    assert!(lines[2].starts_with("(total),1,0,0"), "{csv}");

    // Clear refusals.
    let o = run(&s, &["report", "nps", "--by", "workflow"]).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("workflow"));
    let o = run(&s, &["report", "closure", "--best", "3"]).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("quality"));
    let o = run(&s, &["projections", "rebuild", "--view", "tickets"]).await;
    assert_eq!(o.status.code(), Some(3));

    // A rebuild, waited for; then the status shows the new generation live.
    let o = run(&s, &["projections", "rebuild", "--wait"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("generation 1 is live"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let st = json(&run(&s, &["projections", "status", "-o", "json"]).await);
    let live: Vec<&Value> = st["generations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["state"] == "active")
        .collect();
    assert_eq!(live.len(), 1, "{st}");
    assert_eq!(live[0]["generation"], 1);
    assert_eq!(live[0]["projections"].as_array().unwrap().len(), 5);
    app.stop().await.unwrap();
}
