//! `dashboards/*.json` and `deploy/prometheus/*.yaml` are generated from the builders the operator
//! uses at run time; this fails when the committed files drift. Regenerate with
//! `cargo run -p operator -- dashboards --out dashboards` and
//! `cargo run -p operator -- rules --out deploy/prometheus`.

use std::path::Path;

fn check(dir: &str, ext: &str, rendered: Vec<(String, String)>, command: &str) {
    let dir_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut names: Vec<String> = std::fs::read_dir(&dir_path)
        .unwrap_or_else(|e| panic!("{dir}/ exists: {e}"))
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    let mut want: Vec<String> = rendered.iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    assert_eq!(names, want, "{dir}/ holds exactly the generated {ext} files; run `{command}`");
    for (file, content) in rendered {
        let on_disk = std::fs::read_to_string(dir_path.join(&file)).expect("read generated file");
        assert!(on_disk == content, "{dir}/{file} drifted from its builder; run `{command}`");
    }
}

#[test]
fn committed_dashboards_match_their_templates() {
    let rendered = tiepdan_operator::monitoring_gen::dashboards().expect("render dashboards");
    check("dashboards", ".json", rendered, "cargo run -p operator -- dashboards --out dashboards");
}

#[test]
fn committed_rule_files_match_the_rule_builders() {
    let rendered = tiepdan_operator::monitoring_gen::rules().expect("render rules");
    check("deploy/prometheus", ".yaml", rendered, "cargo run -p operator -- rules --out deploy/prometheus");
}
