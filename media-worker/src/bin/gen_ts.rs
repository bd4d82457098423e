//! `gen-ts`: writes the console's TypeScript wire types; see `tiepdan_media_worker::console_types`.
//! Run from the repository root:
//! `cargo run -p media-worker --features ts --bin gen-ts -- --out media-worker/web/src/generated`.

#![forbid(unsafe_code)]

use clap::Parser as _;
use std::path::PathBuf;
use tiepdan_media_worker::console_types;

/// Write the console's TypeScript wire types (`media-worker/web/src/generated`) from the Rust ones.
#[derive(Debug, clap::Parser)]
struct Args {
    /// The directory to write into: `media-worker/web/src/generated` from the repository root.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for path in console_types::write(&args.out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
