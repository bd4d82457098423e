//! The generated Prometheus rules pass `promtool check rules`, their unit tests in
//! `deploy/prometheus/tests/` pass `promtool test rules`, and every alert has a test case where it
//! fires and one where it does not. promtool comes from Debian's `prometheus` package
//! (`scripts/install-deps.sh` installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn promtool() -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("promtool is not installed: run scripts/install-deps.sh (Debian package `prometheus`)")
    })
}

fn run(args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool()).args(args).current_dir(dir).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn yaml_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("read YAML")).expect("valid YAML")
}

#[test]
fn the_generated_rules_are_valid() {
    let files = yaml_files(&deploy());
    assert!(files.len() >= 2, "{files:?}");
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    run(&args, &deploy());
}

#[test]
fn every_alert_fires_and_stays_quiet_in_the_promtool_unit_tests() {
    let tests_dir = deploy().join("tests");
    let tests = yaml_files(&tests_dir);
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let output = run(&args, &tests_dir);
    assert_eq!(output.matches("SUCCESS").count(), tests.len(), "{output}");

    // Alert name → (cases where it fires, cases where it does not).
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in yaml_files(&deploy()) {
        for g in yaml(&deploy().join(file))["groups"].as_sequence().expect("groups") {
            for r in g["rules"].as_sequence().expect("rules") {
                cases.insert(r["alert"].as_str().expect("alert name").to_owned(), (0, 0));
            }
        }
    }
    for file in &tests {
        for t in yaml(&tests_dir.join(file))["tests"].as_sequence().expect("tests") {
            for case in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().expect("alertname");
                let fires = case["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
                let entry = cases.get_mut(name).unwrap_or_else(|| panic!("{file} tests unknown alert {name}"));
                if fires {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
    }
    for (alert, (firing, quiet)) in &cases {
        assert!(*firing > 0 && *quiet > 0, "{alert}: {firing} firing and {quiet} not-firing test cases");
    }
    let total: usize = cases.values().map(|(f, q)| f + q).sum();
    println!("promtool: {} alerts, {total} alert test cases, all passing", cases.len());
}
