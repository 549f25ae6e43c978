//! `podnet-sandbox up` as a script would use it: started in the background,
//! ready when the env file appears, usable through `source`, exclusive per
//! state directory, stopped by SIGTERM — and moto dies with it even when
//! the sandbox is SIGKILLed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Up {
    child: Child,
    stdout: Arc<Mutex<String>>,
    env_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn up() -> Up {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("sandbox.env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_podnet-sandbox"))
        .args(["up", "--scenario", "seed", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--env-file")
        .arg(&env_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("podnet-sandbox runs");
    let stdout = Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().unwrap();
    let sink = stdout.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let up = Up {
        child,
        stdout,
        env_file,
        _dir: dir,
    };
    common::wait_until("the env file", || up.env_file.exists());
    common::wait_until("the ready banner", || {
        up.stdout.lock().unwrap().contains("Stop with Ctrl-C")
    });
    up
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failed assertion must not leave a sandbox (and moto) behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_port(stdout: &str) -> u16 {
    stdout
        .lines()
        .find_map(|l| l.split("-> moto http://127.0.0.1:").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .expect("the banner names moto's address")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn wait_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if !port_open(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto on port {port} outlived the sandbox");
}

fn sourced(env_file: &Path, cmd: &str) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && {cmd}", env_file.display()))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn up_serves_until_sigterm() {
    let mut sb = up();
    let env = std::fs::read_to_string(&sb.env_file).unwrap();
    for k in [
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_EKS",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "KUBECONFIG",
        "PODNET_SANDBOX_CLUSTER",
    ] {
        assert!(env.contains(&format!("export {k}=")), "{k} in\n{env}");
    }
    assert!(env.contains("export PODNET_SANDBOX_CLUSTER=podnet-demo"));
    let kubectl = common::kubectl_path();
    let (ok, out, err) = sourced(&sb.env_file, &format!("'{}' get nodes --no-headers", kubectl.display()));
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 6);
    let aws = common::venv_bin("aws");
    let (ok, out, err) = sourced(
        &sb.env_file,
        &format!(
            "'{}' eks describe-addon --cluster-name \"$PODNET_SANDBOX_CLUSTER\" --addon-name vpc-cni",
            aws.display()
        ),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["addon"]["addonName"], "vpc-cni");
    let python = common::venv_bin("python");
    let (ok, out, err) = sourced(
        &sb.env_file,
        &format!(
            "'{}' -c 'import boto3; e=boto3.client(\"ec2\"); v=e.describe_vpcs(Filters=[{{\"Name\": \"cidr\", \"Values\": [\"10.255.0.0/16\"]}}])[\"Vpcs\"][0][\"VpcId\"]; print(len(e.describe_subnets(Filters=[{{\"Name\": \"vpc-id\", \"Values\": [v]}}])[\"Subnets\"]))'",
            python.display()
        ),
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "6");

    // one sandbox per state directory
    let state = sb.env_file.parent().unwrap().join("state");
    let second = Command::new(env!("CARGO_BIN_EXE_podnet-sandbox"))
        .args(["up", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another podnet-sandbox is using"));

    let port = moto_port(&sb.stdout.lock().unwrap());
    assert!(port_open(port));
    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(sb.child.id() as i32, libc::SIGTERM);
    }
    let status = sb.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!sb.env_file.exists(), "the env file goes away with the sandbox");
    wait_closed(port);
}

#[test]
fn moto_dies_with_a_killed_sandbox() {
    let mut sb = up();
    let port = moto_port(&sb.stdout.lock().unwrap());
    assert!(port_open(port));
    sb.child.kill().unwrap();
    let _ = sb.child.wait();
    wait_closed(port);
}
