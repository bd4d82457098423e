//! Builds the reception-point console (`media-worker/web/`, TypeScript) into `$OUT_DIR/console.js`,
//! which `src/lib.rs` embeds, so neither the worker's image nor the entry's needs files beside its
//! binary. One crate builds it, so the two binaries serve the same bytes and npm runs once.
//!
//! The sources stay in `media-worker/web/`: the page is the worker's console (its wire types are
//! generated from the worker's Rust types into `web/src/generated`).
//!
//! npm installs the pinned packages of `web/package-lock.json` into `web/node_modules` (once per
//! lock-file change, remembered in a stamp file), then esbuild bundles `web/src/main.ts`. Type
//! checking (`npm run check`) is left to `cargo test`, to keep ordinary builds fast.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The console's sources, from this crate's directory.
const WEB: &str = "../media-worker/web";

/// Written into `node_modules` after a successful install; holds a hash of the package files.
const STAMP: &str = ".tiepdan-installed";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let web = manifest_dir.join(WEB);
    // Directories are scanned recursively by cargo; index.html and console.css are tracked by
    // `include_str!` itself.
    for path in ["src", "package.json", "package-lock.json", "tsconfig.json"] {
        println!("cargo:rerun-if-changed={WEB}/{path}");
    }
    println!("cargo:rerun-if-env-changed=NPM");
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_owned());

    // Builds of several profiles (or several engineers' cargo runs on one checkout) may run this
    // script at once; `npm ci` deletes node_modules first, so serialize on the lock file.
    let lock_path = web.join("package-lock.json");
    let lock_file = fs::File::open(&lock_path).unwrap_or_else(|e| fail(&format!("cannot open {lock_path:?}: {e}")));
    lock_file.lock().unwrap_or_else(|e| fail(&format!("cannot lock {lock_path:?}: {e}")));

    check_npm(&npm);
    let wanted = package_hash(&web);
    let stamp = web.join("node_modules").join(STAMP);
    if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        // --ignore-scripts: no package's install script runs on the build machine; esbuild's
        // binary comes from its platform package (@esbuild/linux-x64) without one.
        run(&npm, &web, &["ci", "--ignore-scripts", "--no-audit", "--no-fund"]);
        fs::write(&stamp, &wanted).unwrap_or_else(|e| fail(&format!("cannot write {stamp:?}: {e}")));
    }

    let bundle = out_dir.join("console.js");
    let outfile = format!("--outfile={}", bundle.display());
    run(&npm, &web, &["run", "--silent", "bundle", "--", &outfile]);
    let size = fs::metadata(&bundle).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        fail(&format!("the bundler wrote no {bundle:?}"));
    }
}

fn package_hash(web: &Path) -> String {
    let mut hasher = DefaultHasher::new();
    for file in ["package.json", "package-lock.json"] {
        let path = web.join(file);
        fs::read(&path).unwrap_or_else(|e| fail(&format!("cannot read {path:?}: {e}"))).hash(&mut hasher);
    }
    format!("{:016x}\n", hasher.finish())
}

fn check_npm(npm: &str) {
    match Command::new(npm).arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => fail(&format!("`{npm} --version` failed:\n{}", String::from_utf8_lossy(&output.stderr))),
        Err(e) => fail(&format!(
            "cannot run `{npm}` ({e}).\n\
             Building tiepdan-console-assets bundles the browser console (media-worker/web) with npm.\n\
             Install Node.js 20 or newer with npm (on Debian: `apt-get install nodejs npm`, or run \
             scripts/install-deps.sh), or point the NPM environment variable at an npm binary."
        )),
    }
}

fn run(npm: &str, dir: &Path, args: &[&str]) {
    let output = Command::new(npm)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run `{npm} {}`: {e}", args.join(" "))));
    if !output.status.success() {
        fail(&format!(
            "`{npm} {}` in {dir:?} failed ({}):\n{}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

fn fail(message: &str) -> ! {
    // Cargo shows a failed build script's stderr; a plain message reads better than a panic.
    eprintln!("\nconsole build: {message}\n");
    std::process::exit(1);
}
