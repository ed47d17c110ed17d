//! `seatflow bench compare a.json b.json`: two runs side by side, printed, and drawn with
//! `--report`.

use std::path::{Path, PathBuf};

use super::Report;
use super::page::{self, Named};
use super::record::BenchRun;

/// What to compare and where to draw it.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The first run (`seatflow bench --json a.json`): the one the other is measured against.
    pub a: PathBuf,
    /// The second run.
    pub b: PathBuf,
    /// Also write both runs on one self-contained HTML page.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write each chart to this directory as an SVG file.
    #[arg(long)]
    pub charts: Option<PathBuf>,
}

/// Print the two runs side by side, and draw them where asked.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let a = BenchRun::read(&args.a)?;
    let b = BenchRun::read(&args.b)?;
    let (name_a, name_b) = names(&args.a, &args.b);
    print!("{}", side_by_side(&name_a, &a, &name_b, &b));
    let runs = [
        Named {
            name: &name_a,
            run: &a,
        },
        Named {
            name: &name_b,
            run: &b,
        },
    ];
    super::write_pictures(
        &format!("seatflow bench: {name_a} and {name_b}"),
        &runs,
        args.report.as_deref(),
        args.charts.as_deref(),
    )
}

/// Each run named by its file (its whole path where both files have the same name).
fn names(a: &Path, b: &Path) -> (String, String) {
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    if stem(a) == stem(b) {
        (a.display().to_string(), b.display().to_string())
    } else {
        (stem(a), stem(b))
    }
}

/// The figures of both runs' sales (and baselines, when both had one), a row each, with the
/// second's ratio to the first; then the settings and machine lines that differ.
pub(super) fn side_by_side(name_a: &str, a: &BenchRun, name_b: &str, b: &BenchRun) -> String {
    let mut out = String::new();
    let width = name_a.len().max(name_b.len()).max(14);
    let mut block = |title: &str, ra: &Report, rb: &Report| {
        out.push_str(&format!(
            "== {title} ==\n{:<18} {:>width$} {:>width$} {:>8}\n",
            "", name_a, name_b, "b / a"
        ));
        for figure in &page::FIGURES {
            let (va, vb) = ((figure.of)(ra), (figure.of)(rb));
            out.push_str(&format!(
                "{:<18} {:>width$} {:>width$} {:>8}\n",
                figure.name,
                page::number(va, figure.digits),
                page::number(vb, figure.digits),
                page::ratio(va, vb)
            ));
        }
        if !ra.is_baseline() {
            let yes = |r: &Report| if r.verified() { "yes" } else { "NO" };
            out.push_str(&format!(
                "{:<18} {:>width$} {:>width$}\n",
                "verified",
                yes(ra),
                yes(rb)
            ));
        }
    };
    if let (Some(ra), Some(rb)) = (a.sale(), b.sale()) {
        block("reservations", ra, rb);
    }
    if let (Some(ra), Some(rb)) = (a.baseline(), b.baseline()) {
        block("baseline", ra, rb);
    }
    let mut rows_a = a.settings.rows();
    rows_a.extend(a.machine.rows());
    let mut rows_b = b.settings.rows();
    rows_b.extend(b.machine.rows());
    let differ: Vec<_> = rows_a
        .iter()
        .zip(&rows_b)
        .filter(|(x, y)| x.1 != y.1)
        .collect();
    if !differ.is_empty() {
        out.push_str("== not the same ==\n");
        for ((name, x), (_, y)) in differ {
            out.push_str(&format!("{name:<18} {x:>width$} {y:>width$}\n"));
        }
    }
    out
}
