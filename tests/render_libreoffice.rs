//! Every current form rendered and opened by a real LibreOffice: converted to text, every field label,
//! every choice label and the title must be there; converted to PDF (LibreOffice's text export leaves out
//! footers), `pdftotext` must find the footer stamp. A filled death form must show every value and its
//! ticked boxes. This is the check that the .docx is one an office
//! suite reads, not merely one our own tests parse.
//!
//! Without `soffice` (or `pdftotext`) on PATH the test says SKIP loudly and passes, unless
//! `POSTROOM_REQUIRE_TOOLS=1`, when it fails. Set `POSTROOM_RENDER_OUT=DIR` to keep the files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use postroom::forms::render::render;
use postroom::forms::{Catalog, FieldKind, FormDef, Value};

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Returns false (after a loud message) when the test must be skipped.
fn tools_present(names: &[&str]) -> bool {
    let missing: Vec<&str> = names.iter().copied().filter(|n| tool(n).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let message =
        format!("{} not found on PATH (apt-get install libreoffice-writer-nogui poppler-utils)", missing.join(", "));
    if std::env::var("POSTROOM_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("POSTROOM_REQUIRE_TOOLS=1 but {message}");
    }
    // Straight to stderr, past the test harness's capture, so the skip shows in a passing run.
    let _ = std::io::stderr().write_all(format!("\n*** SKIP render_libreoffice: {message} ***\n\n").as_bytes());
    false
}

/// Runs a command to completion or kills it after `limit`: a wedged office suite must not hang CI.
fn run(cmd: &mut Command, limit: Duration) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start command");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            assert!(
                status.success(),
                "{cmd:?} failed: {status}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `soffice --convert-to` with a profile of its own, so parallel runs (and a desktop session) don't clash.
fn convert(profile: &Path, to: &str, outdir: &Path, files: &[PathBuf]) {
    let mut cmd = Command::new("soffice");
    cmd.arg(format!("-env:UserInstallation=file://{}", profile.display()))
        .args(["--headless", "--norestore", "--nolockcheck", "--convert-to", to, "--outdir"])
        .arg(outdir)
        .args(files);
    run(&mut cmd, Duration::from_secs(300));
}

/// Whitespace-insensitive: every run of whitespace is dropped, so wrapping and tab layout do not matter.
fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A value in every field: text naming the field (two lines for long text), a date, the last box ticked.
fn filled_values(def: &FormDef) -> BTreeMap<String, Value> {
    def.fields()
        .map(|f| {
            let value = match f.kind {
                k if k.is_boxes() => Value::Choices(vec![f.effective_choices().last().expect("choices").key.clone()]),
                FieldKind::Date => Value::Text("2026-11-20".into()),
                FieldKind::LongText => Value::Text(format!("First line of {}.\nSecond line & <more>.", f.key)),
                _ => Value::Text(format!("Answer to {}", f.key)),
            };
            (f.key.clone(), value)
        })
        .collect()
}

#[test]
fn libreoffice_reads_every_label_choice_title_and_stamp() {
    if !tools_present(&["soffice", "pdftotext"]) {
        return;
    }
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = match std::env::var_os("POSTROOM_RENDER_OUT") {
        Some(d) => PathBuf::from(d),
        None => scratch.path().join("forms"),
    };
    let (txt_dir, pdf_dir) = (dir.join("txt"), dir.join("pdf"));
    for d in [&dir, &txt_dir, &pdf_dir] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let catalog = Catalog::embedded().expect("embedded forms");
    let mut files = Vec::new();
    for def in catalog.current_forms() {
        let path = dir.join(format!("{}.docx", def.id));
        std::fs::write(&path, render(def, None).expect("render")).expect("write form");
        files.push(path);
    }
    let filled = catalog.current("death").expect("death form");
    let values = filled_values(filled);
    let filled_path = dir.join("death-filled.docx");
    std::fs::write(&filled_path, render(filled, Some(&values)).expect("render filled")).expect("write form");
    files.push(filled_path);
    let profile = scratch.path().join("lo-profile");
    convert(&profile, "txt:Text (encoded):UTF8", &txt_dir, &files);
    convert(&profile, "pdf", &pdf_dir, &files);

    let mut failures = Vec::new();
    for def in catalog.current_forms() {
        let txt_path = txt_dir.join(format!("{}.txt", def.id));
        let text =
            squash(&std::fs::read_to_string(&txt_path).unwrap_or_else(|e| panic!("{}: {e}", txt_path.display())));
        // In document order: each piece must appear after the one before it, so a label cannot be
        // "found" inside help text or another label further up.
        let mut expect = vec![("title", def.title.clone()), ("regulation", def.regulation.clone())];
        for section in &def.sections {
            expect.push(("section", section.title.clone()));
            for f in &section.fields {
                expect.push(("label", f.label.clone()));
                for c in f.effective_choices() {
                    expect.push(("choice", format!("{} {}", '\u{2610}', c.label)));
                }
            }
        }
        let mut at = 0;
        for (what, s) in expect {
            match text[at..].find(&squash(&s)) {
                Some(i) => at += i + squash(&s).len(),
                None => failures.push(format!("{}: {what} `{s}` missing from LibreOffice's text (in order)", def.id)),
            }
        }
        let pdf_path = pdf_dir.join(format!("{}.pdf", def.id));
        let pdf_text = pdf_dir.join(format!("{}.pdf.txt", def.id));
        run(Command::new("pdftotext").args(["-enc", "UTF-8"]).arg(&pdf_path).arg(&pdf_text), Duration::from_secs(60));
        let pdf = squash(&std::fs::read_to_string(&pdf_text).expect("pdftotext output"));
        if !pdf.contains(&squash(&def.stamp())) {
            failures.push(format!("{}: stamp `{}` missing from the PDF's footer", def.id, def.stamp()));
        }
        if !pdf.contains(&squash(&def.title)) {
            failures.push(format!("{}: title missing from the PDF", def.id));
        }
    }
    let text = squash(&std::fs::read_to_string(txt_dir.join("death-filled.txt")).expect("filled text"));
    for f in filled.fields() {
        let expected = match &values[&f.key] {
            Value::Text(_) if f.kind == FieldKind::Date => "20/11/2026".to_string(),
            Value::Text(t) => t.clone(),
            Value::Choices(keys) => {
                let choice = f.effective_choices().into_iter().find(|c| c.key == keys[0]).expect("choice");
                format!("{} {}", '\u{2612}', choice.label)
            }
        };
        if !text.contains(&squash(&expected)) {
            failures.push(format!("filled death: {} shows no `{expected}`", f.key));
        }
    }
    if text.contains(&squash("Click or tap")) {
        failures.push("filled death: a placeholder is still showing".into());
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
