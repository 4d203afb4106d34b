//! Embeds `forms/` and `templates/` into the binary: Postroom runs from any directory with no files beside it.
use std::{env, fs, path::Path};

fn main() {
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded.rs");
    let mut code = String::new();
    for dir in ["forms", "templates"] {
        println!("cargo:rerun-if-changed={dir}");
        let mut files = Vec::new();
        collect(Path::new(dir), &mut files);
        files.sort();
        code.push_str(&format!("pub static {}: &[(&str, &str)] = &[\n", dir.to_uppercase()));
        for f in files {
            let rel = f.strip_prefix(dir).expect("walked under dir").to_string_lossy().replace('\\', "/");
            let abs = fs::canonicalize(&f).expect("file exists");
            code.push_str(&format!("    ({rel:?}, include_str!({:?})),\n", abs.display().to_string()));
        }
        code.push_str("];\n");
    }
    fs::write(out, code).expect("write embedded.rs");
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "toml" || e == "hbs") {
            files.push(path);
        }
    }
}
