//! Compiles `proto/closeloop/v1/*.proto` with protox (pure Rust, no system
//! `protoc`) and generates prost messages and tonic services. The encoded
//! file descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "closeloop/v1/ticket_events.proto",
        "closeloop/v1/tickets.proto",
        "closeloop/v1/directory.proto",
        "closeloop/v1/feedback.proto",
        "closeloop/v1/routing_events.proto",
        "closeloop/v1/notification_events.proto",
        "closeloop/v1/notifications.proto",
        "closeloop/v1/sla_events.proto",
        "closeloop/v1/report_events.proto",
        "closeloop/v1/escalation.proto",
        "closeloop/v1/analytics.proto",
    ];
    let paths: Vec<PathBuf> = files.iter().map(|f| root.join(f)).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let fds = protox::compile(&paths, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("closeloop_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // BTreeMap for map fields: their encoding is then deterministic, so a
    // content hash of an encoded message is stable across builds.
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
