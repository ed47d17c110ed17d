//! `seatflow bench show run.json`: a run written by `--json FILE`, printed again and drawn
//! (the pictures of a run can be made after it, from its file).

use std::path::PathBuf;

use super::page::Named;
use super::record::BenchRun;

/// The run to show and where to draw it.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The run (`seatflow bench --json run.json`).
    pub run: PathBuf,
    /// Also write the run on one self-contained HTML page.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write each chart to this directory as an SVG file.
    #[arg(long)]
    pub charts: Option<PathBuf>,
}

/// Print the run's reports as the run printed them, and draw it where asked.
pub fn run(args: &ShowArgs) -> anyhow::Result<()> {
    let run = BenchRun::read(&args.run)?;
    run.reports.iter().for_each(super::print_report);
    let name = args
        .run
        .file_stem()
        .map_or_else(|| "run".to_owned(), |s| s.to_string_lossy().into_owned());
    super::write_pictures(
        &format!("seatflow bench: {name}"),
        &[Named {
            name: &name,
            run: &run,
        }],
        args.report.as_deref(),
        args.charts.as_deref(),
    )
}
