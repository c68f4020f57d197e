//! Embeds `migrations/*/up.sql` as `MIGRATION_FILES` (in `db::migrate`),
//! in the order of their names, so the server can run each statement on its
//! own and resume a migration a crash left half done.

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=migrations");
    let mut names: Vec<String> = fs::read_dir("migrations")?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("up.sql").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = String::from("pub const MIGRATION_FILES: &[MigrationFile] = &[\n");
    for name in &names {
        println!("cargo:rerun-if-changed=migrations/{name}/up.sql");
        writeln!(
            out,
            "    MigrationFile {{ name: {name:?}, up: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/migrations/{name}/up.sql\")) }},"
        )?;
    }
    out.push_str("];\n");
    fs::write(Path::new(&env::var("OUT_DIR")?).join("migrations.rs"), out)?;
    Ok(())
}
