//! The podnet binary as users run it: exit codes, human and JSON output of
//! the commands that need no cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn podnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("PODNET_FILE")
        .env_remove("PODNET_STATE_DIR")
        .output()
        .expect("run podnet")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn quiet_number(args: &[&str]) -> u32 {
    let mut all = vec!["-q", "max-pods"];
    all.extend_from_slice(args);
    let o = podnet(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {:?}", stdout(&o)))
}

#[test]
fn max_pods_matches_the_calculator() {
    assert_eq!(
        quiet_number(&["--instance-type", "t3.medium", "--cni-custom-networking"]),
        12
    );
    assert_eq!(quiet_number(&["--instance-type", "t3.medium"]), 17);
    assert_eq!(quiet_number(&["-i", "m5.large", "--cni-custom-networking"]), 20);
    assert_eq!(quiet_number(&["-i", "m5.large", "--cni-prefix-delegation"]), 110);
    assert_eq!(
        quiet_number(&[
            "-i",
            "m5.large",
            "--cni-prefix-delegation",
            "--cni-custom-networking",
            "--show-max-allowed"
        ]),
        290
    );
    // Prefix delegation needs CNI >= 1.9.
    assert_eq!(
        quiet_number(&["-i", "m5.large", "--cni-prefix-delegation", "--cni-version", "1.8.0"]),
        29
    );
}

#[test]
fn max_pods_human_table_shows_both_views() {
    let o = podnet(&["max-pods", "--instance-type", "t3.medium", "--cni-custom-networking"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let row = out
        .lines()
        .find(|l| l.starts_with("t3.medium"))
        .expect("a t3.medium row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, ["t3.medium", "2", "2", "6", "12", "12"], "{out}");
    assert!(out.contains("KARPENTER (reservedENIs=1)"), "{out}");
}

#[test]
fn max_pods_json_is_an_array_in_request_order() {
    let o = podnet(&[
        "max-pods",
        "-i",
        "m5.large",
        "-i",
        "t3.medium,c6in.32xlarge",
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let arr = v.as_array().unwrap();
    let got: Vec<(&str, u64)> = arr
        .iter()
        .map(|x| (x["instance_type"].as_str().unwrap(), x["max_pods"].as_u64().unwrap()))
        .collect();
    // c6in.32xlarge has two cards of 8 ENIs: 8 × 49 + 2 = 394, capped at 250.
    assert_eq!(got, [("m5.large", 29), ("t3.medium", 17), ("c6in.32xlarge", 250)]);
    assert_eq!(arr[2]["enis_for_pods"], 8);
    assert_eq!(arr[2]["uncapped_max_pods"], 394);
}

#[test]
fn max_pods_unknown_type_names_close_matches() {
    let o = podnet(&["max-pods", "-i", "m5.larg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("did you mean m5.large"), "{}", stderr(&o));
    let o = podnet(&["max-pods", "-i", "t3.medium", "--cni-version", "new"]);
    assert_eq!(o.status.code(), Some(2), "clap usage errors exit 2");
    assert!(stderr(&o).contains("not a VPC CNI version"));
}

#[test]
fn validate_the_shipped_plans() {
    for plan in ["plans/seed-ap-northeast-2.toml", "plans/example.toml"] {
        let o = podnet(&["-f", plan, "validate"]);
        assert!(o.status.success(), "{plan}: {}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("is valid"));
    }
    // Global flags after the subcommand too.
    let o = podnet(&["validate", "-f", "plans/seed-ap-northeast-2.toml", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["spec"]["cluster"], "podnet-demo");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn validate_names_every_broken_field() {
    let d = tempfile::tempdir().unwrap();
    let bad = write(
        d.path(),
        "bad.toml",
        "[cluster]\nname = \"c\"\nregion = \"eu-west-1\"\nnmae = \"typo\"\n\
         [pod_subnets]\nsizing = \"explicit\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"eu-west-1a\"\ncidr = \"10.0.0.0/24\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"eu-west-1a\"\ncidr = \"100.64.0.0/30\"\n",
    );
    let o = podnet(&["-f", &bad, "validate", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let paths: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for want in [
        "cluster.nmae",
        "pod_subnets.subnet[0].cidr",
        "pod_subnets.subnet[1].availability_zone",
        "pod_subnets.subnet[1].cidr",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !p["fix"].as_str().unwrap().is_empty())
    );

    for (name, text, needle) in [
        ("empty.toml", "", "empty"),
        ("garbage.toml", "{{{ not toml", "not valid TOML"),
        ("binary.toml", "\u{7f}ELF\u{1}\u{0}", "not valid TOML"),
    ] {
        let f = write(d.path(), name, text);
        let o = podnet(&["-f", &f, "validate"]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(stdout(&o).contains(needle), "{name}: {}", stdout(&o));
    }
    let o = podnet(&["-f", "/nonexistent/podnet.toml", "validate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("-f/--file"));
}

#[test]
fn status_and_unlock_without_a_migration() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_string_lossy().into_owned();
    let o = podnet(&["status", "--state-dir", &dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("No migration has been applied"));
    let o = podnet(&["status", "--state-dir", &dir, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["migration"], "none");
    let o = podnet(&["unlock", "--state-dir", &dir, "--yes"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("No lock is held"));
}

#[test]
fn unlock_releases_a_lock_left_by_a_dead_process() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_string_lossy().into_owned();
    let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap();
    let left = serde_json::json!({
        "pid": 4_194_311u32, "host": host.trim(), "command": "apply", "started_at": "2026-11-22T01:02:03Z"
    });
    std::fs::write(d.path().join("lock"), left.to_string()).unwrap();
    let o = podnet(&["status", "--state-dir", &dir]);
    assert!(stdout(&o).contains("No migration"), "{}", stdout(&o));
    // Without a terminal and without --yes, unlock refuses.
    let o = podnet(&["unlock", "--state-dir", &dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(d.path().join("lock").exists());
    let o = podnet(&["unlock", "--state-dir", &dir, "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!d.path().join("lock").exists());
}

#[test]
fn help_explains_exit_codes_and_defaults() {
    let o = podnet(&["--help"]);
    let out = stdout(&o);
    assert!(out.contains("Exit codes"), "{out}");
    assert!(out.contains("--state-dir"));
    let o = podnet(&["max-pods", "--help"]);
    assert!(stdout(&o).contains("--cni-custom-networking"));
}

/// The bash script sources cleanly and completes subcommands and their
/// flags, as bash's programmable completion calls it.
#[test]
fn bash_completions_source_cleanly_and_complete_subcommands() {
    let o = podnet(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("podnet.bash");
    std::fs::write(&script, o.stdout).expect("write");
    let complete = |words: &str| -> String {
        let line = format!(
            "set -e; source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _podnet podnet \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let o = Command::new("bash")
            .args(["--norc", "-c", &line])
            .output()
            .expect("run bash");
        assert!(o.status.success(), "bash: {}", stderr(&o));
        stdout(&o)
    };
    let subcommands = complete("podnet ro");
    assert!(subcommands.lines().any(|l| l == "rollback"), "{subcommands}");
    let flags = complete("podnet rollback --");
    assert!(flags.lines().any(|l| l == "--auto-approve"), "{flags}");
    assert!(flags.lines().any(|l| l == "--stop-after"), "{flags}");
}

/// The manual page renders with `man -l`, naming every subcommand.
#[test]
fn the_man_page_renders_with_man() {
    let o = podnet(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("podnet.1");
    std::fs::write(&page, o.stdout).expect("write");
    let man = Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .output()
        .expect("`man` runs (Debian: apt-get install man-db; .ci/run installs it)");
    assert!(man.status.success(), "{}", stderr(&man));
    let text = stdout(&man);
    assert!(text.contains("podnet"), "{text}");
    for sub in [
        "init",
        "plan",
        "apply",
        "resume",
        "rollback",
        "status",
        "verify",
        "completions",
    ] {
        assert!(text.contains(sub), "the page names {sub}: {text}");
    }
}
