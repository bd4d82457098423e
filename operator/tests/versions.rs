//! One version and one set of image names for the whole release: the workspace version
//! (`[workspace.package]` in Cargo.toml) is every crate's version, the chart's `version` and
//! `appVersion`, and the tag of the operator's default worker image; the image names of
//! `images/names.env` (which `scripts/images.sh` builds) are the chart's operator repository and
//! the operator's default worker image. Fails when any of these drift apart.

mod support;

use serde_yaml::Value;
use support::{image_name, read, workspace_package};
use tiepdan_operator::api::media_worker_pool::DEFAULT_IMAGE;

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_crate_takes_the_workspace_version() {
    let version = workspace_package("version");
    assert_eq!(env!("CARGO_PKG_VERSION"), version, "the operator's version is the workspace's");
    for manifest in ["operator/Cargo.toml", "media-worker/Cargo.toml", "telemetry/Cargo.toml", "tests/Cargo.toml"] {
        let text = read(manifest);
        assert!(
            text.lines().any(|l| l.trim() == "version.workspace = true"),
            "{manifest} must say `version.workspace = true`, so that the images' tags follow Cargo.toml"
        );
    }
}

#[test]
fn the_chart_is_versioned_with_the_workspace() {
    let version = workspace_package("version");
    let chart = yaml("charts/tiepdan/Chart.yaml");
    assert_eq!(chart["appVersion"].as_str(), Some(version.as_str()), "Chart.yaml appVersion");
    assert_eq!(chart["version"].as_str(), Some(version.as_str()), "Chart.yaml version");
}

#[test]
fn the_chart_deploys_the_operator_image_that_images_sh_builds() {
    let values = yaml("charts/tiepdan/values.yaml");
    let operator = image_name("OPERATOR_IMAGE");
    assert_eq!(values["image"]["repository"].as_str(), Some(operator.as_str()), "values.yaml image.repository");
    // An empty tag means the chart's appVersion, which the test above ties to the workspace.
    assert_eq!(values["image"]["tag"].as_str(), Some(""), "values.yaml image.tag stays empty");
    let want = format!("image: \"{operator}:{}\"", workspace_package("version"));
    assert!(
        read("charts/rendered/tiepdan.yaml").lines().any(|l| l.trim() == want),
        "charts/rendered/tiepdan.yaml deploys `{want}`; run scripts/render-chart.sh"
    );
}

#[test]
fn the_default_worker_image_is_the_one_images_sh_builds() {
    let want = format!("{}:{}", image_name("MEDIA_WORKER_IMAGE"), workspace_package("version"));
    assert_eq!(DEFAULT_IMAGE, want);
}

#[test]
fn images_sh_takes_its_names_from_names_env() {
    // A second copy of a name in the script is what would drift; the script must only source them.
    let script = read("scripts/images.sh");
    assert!(
        script.lines().any(|l| l.trim() == "source images/names.env"),
        "scripts/images.sh sources images/names.env"
    );
    for key in ["OPERATOR_IMAGE", "MEDIA_WORKER_IMAGE", "ENTRY_IMAGE", "PAUSE_IMAGE"] {
        let name = image_name(key);
        let repository = name.rsplit_once(':').map_or(name.as_str(), |(r, _)| r);
        assert!(!script.contains(repository), "scripts/images.sh spells out {repository}; use ${key}");
        assert!(script.contains(&format!("${key}")), "scripts/images.sh builds ${key}");
    }
}

#[test]
fn the_dockerfiles_build_what_images_sh_builds() {
    // They cannot be built on the build machine (no Docker engine), so their versions, toolchain
    // and layout are checked here, against the same sources as the offline images.
    let version = workspace_package("version");
    let source = workspace_package("repository");
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .expect("rust-toolchain.toml has a channel")
        .trim_matches('"');
    let minor = channel.rsplit_once('.').map_or(channel, |(m, _)| m);
    for binary in ["tiepdan-operator", "tiepdan-media-worker", "tiepdan-entry"] {
        let path = format!("images/{}/Dockerfile", binary.trim_start_matches("tiepdan-"));
        let dockerfile = read(&path);
        let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
        for want in [
            format!("FROM rust:{minor}-bookworm AS build"),
            "FROM gcr.io/distroless/cc-debian12:nonroot".to_owned(),
            format!("ARG VERSION={version}"),
            format!("org.opencontainers.image.source={source}"),
            format!("LABEL org.opencontainers.image.title={binary} \\"),
            format!("COPY --from=build /out/{binary} /usr/local/bin/{binary}"),
            "USER 65532:65532".to_owned(),
            format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]"),
        ] {
            assert!(lines.contains(&want.as_str()), "{path} lacks `{want}`");
        }
    }
}
