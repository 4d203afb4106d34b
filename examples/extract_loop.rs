//! Extraction plus validation of one filled form, repeated: a steady loop for profilers and instruction
//! counters (`valgrind --tool=cachegrind`, see `scripts/bench-instructions`), and the fastest and median
//! iteration, which a busy machine disturbs less than criterion's mean.
//! Usage: `cargo run --release --example extract_loop -- <form id> <iterations>`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use postroom::forms::{Catalog, DocxLimits, extract, render};
use postroom::samples;
use postroom::validate::{self, Context};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let form = args.next().unwrap_or_else(|| "death".to_string());
    let iterations: usize = args.next().as_deref().unwrap_or("1000").parse()?;
    let catalog = Catalog::embedded()?;
    let def =
        catalog.current_forms().find(|d| d.id == form).ok_or_else(|| anyhow::anyhow!("no current form `{form}`"))?;
    let now = chrono::Utc::now();
    let values = samples::filled(def, &samples::example_notifier(), now.date_naive());
    let docx = render::render(def, Some(&values))?;
    let ctx = Context { catalog: &catalog, mailbox: &def.mailbox, received_at: now, forms_url: "https://example.org" };
    let limits = DocxLimits::default();
    let mut problems = 0;
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let form = extract::extract(black_box(&docx), &catalog, &limits)?;
        problems += validate::check_form(def, &form, &ctx).problems.len();
        times.push(started.elapsed());
    }
    times.sort();
    let micros = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e6);
    println!(
        "{form}: {iterations} iterations, fastest {:.1} µs, median {:.1} µs, {problems} problems in all",
        micros(times.first()),
        micros(times.get(times.len() / 2)),
    );
    Ok(())
}
