//! Extraction plus validation of one filled form, for every current form definition: the per-form cost
//! the daemon pays (target: under 0.2 ms). Run with `scripts/bench`; figures go in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use postroom::forms::{Catalog, DocxLimits, extract, render};
use postroom::samples;
use postroom::validate::{self, Context};

fn bench(c: &mut Criterion) {
    let Ok(catalog) = Catalog::embedded() else { return };
    let now = chrono::Utc::now();
    let today = now.date_naive();
    let limits = DocxLimits::default();
    let mut group = c.benchmark_group("extract_validate");
    for def in catalog.current_forms() {
        let values = samples::filled(def, &samples::example_notifier(), today);
        let Ok(docx) = render::render(def, Some(&values)) else { continue };
        let ctx =
            Context { catalog: &catalog, mailbox: &def.mailbox, received_at: now, forms_url: "https://example.org" };
        group.bench_function(&def.id, |b| {
            b.iter(|| {
                let Ok(form) = extract::extract(black_box(&docx), &catalog, &limits) else { return 0 };
                validate::check_form(def, &form, &ctx).problems.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
