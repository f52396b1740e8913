//! Clients in other languages on the socket API: grpc-python (grpcio) and
//! grpcurl, as the README shows them. Both send the socket path as the
//! HTTP/2 `:authority` on a `unix:` target, which kircd must accept.
//! `dev/test` provides them: `KIRC_TEST_PYTHON` (a Python with grpcio and
//! grpcio-tools) and `KIRC_TEST_GRPCURL`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use kirc_testkit::{Actor, Daemon, repo_root};

fn tool(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with dev/test, which installs the clients")
    })
}

#[tokio::test]
async fn grpc_python_calls_get_status_and_subscribe() {
    let python = tool("KIRC_TEST_PYTHON");
    let actor = Actor::new("python").await;
    let daemon = Daemon::start(&actor).await;
    let out = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(&python)
        .arg(repo_root().join("kircd/tests/clients/status.py"))
        .arg(&daemon.socket)
        .arg(repo_root().join("kirc-proto/proto"))
        .arg(out.path())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the Python client failed:\n{}\nkircd:\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.stderr()
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["api_version"], kirc_proto::API_VERSION);
    assert_eq!(answer["actor_id"], actor.actor_id.as_str());
    assert_eq!(answer["ready"], true);
    assert_eq!(answer["first_event"], "snapshot");
    assert_eq!(answer["snapshot_actor_id"], actor.actor_id.as_str());
}

#[tokio::test]
async fn grpcurl_calls_get_status_with_any_authority() {
    let grpcurl = tool("KIRC_TEST_GRPCURL");
    let actor = Actor::new("grpcurl").await;
    let daemon = Daemon::start(&actor).await;
    let target = format!("unix://{}", daemon.socket.display());
    // grpc-go sends "localhost" for a unix target; other clients send the
    // socket path, which `-authority` reproduces here.
    let socket_path = daemon.socket.display().to_string();
    for authority in [None, Some(socket_path.as_str())] {
        let mut command = tokio::process::Command::new(&grpcurl);
        command.arg("-plaintext");
        if let Some(authority) = authority {
            command.arg("-authority").arg(authority);
        }
        let output = command
            .arg("-import-path")
            .arg(repo_root().join("kirc-proto/proto"))
            .arg("-proto")
            .arg("kirc/v1/daemon.proto")
            .arg(&target)
            .arg("kirc.v1.Daemon/GetStatus")
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "grpcurl (authority {authority:?}) failed:\n{}\nkircd:\n{}",
            String::from_utf8_lossy(&output.stderr),
            daemon.stderr()
        );
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(status["actorId"], actor.actor_id.as_str());
        assert_eq!(status["apiVersion"], kirc_proto::API_VERSION);
    }
}
