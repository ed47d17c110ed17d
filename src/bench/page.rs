//! The page of one run or of runs side by side (`--report`, `seatflow bench compare --report`):
//! one self-contained HTML file, its charts inline SVG, nothing fetched when it is opened.

use std::fmt::Write;

use super::Report;
use super::chart::{self, Line, Measure};
use super::record::BenchRun;

/// A run and what to call it on the page.
#[derive(Debug, Clone, Copy)]
pub(super) struct Named<'a> {
    pub name: &'a str,
    pub run: &'a BenchRun,
}

/// The lines every chart draws: each run's sale, and its baseline faint beside it.
fn lines<'a>(runs: &'a [Named<'a>], names: &'a [(String, String)]) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    for (run, (named, (sale, baseline))) in runs.iter().zip(names).enumerate() {
        if let Some(report) = named.run.sale() {
            lines.push(Line {
                name: sale,
                seconds: &report.timeline,
                run,
                faint: false,
            });
        }
        if let Some(report) = named.run.baseline() {
            lines.push(Line {
                name: baseline,
                seconds: &report.timeline,
                run,
                faint: true,
            });
        }
    }
    lines
}

fn line_names(runs: &[Named<'_>]) -> Vec<(String, String)> {
    runs.iter()
        .map(|named| {
            if runs.len() == 1 {
                ("reservations".to_owned(), "baseline (echo)".to_owned())
            } else {
                (named.name.to_owned(), format!("{} baseline", named.name))
            }
        })
        .collect()
}

/// The charts, each an SVG document, with the file name it has on its own.
pub(super) fn charts(runs: &[Named<'_>]) -> anyhow::Result<Vec<(&'static str, String)>> {
    let names = line_names(runs);
    let lines = lines(runs, &names);
    Measure::ALL
        .iter()
        .map(|&measure| Ok((measure.file_name(), chart::draw(measure, &lines)?)))
        .collect()
}

/// The whole page.
pub(super) fn render(title: &str, runs: &[Named<'_>]) -> anyhow::Result<String> {
    let mut page = String::new();
    write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    )?;
    page.push_str(&verdicts(runs));
    page.push_str("<h2>Figures</h2>\n");
    page.push_str(&figures(runs));
    page.push_str("<h2>Second by second</h2>\n<div class=\"charts\">\n");
    for (_, svg) in charts(runs)? {
        page.push_str("<figure>");
        page.push_str(&svg);
        page.push_str("</figure>\n");
    }
    page.push_str("</div>\n<h2>Machine and settings</h2>\n");
    page.push_str(&setup(runs));
    page.push_str("</body>\n</html>\n");
    Ok(page)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1600px}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:0.3em 0.7em;text-align:right}\
th:first-child,td:first-child{text-align:left}\
thead th{background:#f3f3f3}\
.ok{color:#1a7f37;font-weight:bold}.bad{color:#c62828;font-weight:bold}\
.charts{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}";

/// One line per run: was the sale verified, and what that means.
fn verdicts(runs: &[Named<'_>]) -> String {
    let mut out = String::from("<ul class=\"verdicts\">\n");
    for named in runs {
        let Some(sale) = named.run.sale() else {
            continue;
        };
        let (class, word) = if sale.verified() {
            ("ok", "verified")
        } else {
            ("bad", "NOT verified")
        };
        let _ = writeln!(
            out,
            "<li><b>{}</b> ({}): <span class=\"{class}\">{word}</span>: {} seats sold of {}, \
             {} duplicate seats, {} errors, {} timeouts; the server says {} available</li>",
            escape(named.name),
            escape(&named.run.started_at),
            sale.seats_sold,
            sale.capacity,
            sale.duplicate_seats,
            sale.errors,
            sale.timeouts,
            sale.server_available
                .map_or_else(|| "?".to_owned(), |n| n.to_string())
        );
    }
    out.push_str("</ul>\n");
    out
}

/// A figure of a report, for a table row (the page's and `bench compare`'s).
pub(super) struct Figure {
    pub name: &'static str,
    pub of: fn(&Report) -> f64,
    /// Digits after the point.
    pub digits: usize,
}

pub(super) const FIGURES: [Figure; 12] = [
    Figure {
        name: "requests / s",
        of: |r| r.throughput_per_sec,
        digits: 0,
    },
    Figure {
        name: "elapsed s",
        of: |r| r.elapsed_secs,
        digits: 2,
    },
    Figure {
        name: "P50 ms",
        of: |r| r.latency_ms.p50,
        digits: 2,
    },
    Figure {
        name: "P95 ms",
        of: |r| r.latency_ms.p95,
        digits: 2,
    },
    Figure {
        name: "P99 ms",
        of: |r| r.latency_ms.p99,
        digits: 2,
    },
    Figure {
        name: "max ms",
        of: |r| r.latency_ms.max,
        digits: 2,
    },
    Figure {
        name: "confirmed",
        of: |r| r.confirmed as f64,
        digits: 0,
    },
    Figure {
        name: "rejected",
        of: |r| r.rejected as f64,
        digits: 0,
    },
    Figure {
        name: "errors",
        of: |r| r.errors as f64,
        digits: 0,
    },
    Figure {
        name: "timeouts",
        of: |r| r.timeouts as f64,
        digits: 0,
    },
    Figure {
        name: "duplicate seats",
        of: |r| r.duplicate_seats as f64,
        digits: 0,
    },
    Figure {
        name: "seats sold",
        of: |r| r.seats_sold as f64,
        digits: 0,
    },
];

/// The figures of every report of every run, a column each; with two runs, their sales'
/// ratio (second / first) last.
fn figures(runs: &[Named<'_>]) -> String {
    let columns: Vec<(String, &Report)> = runs
        .iter()
        .flat_map(|named| {
            named.run.reports.iter().map(move |report| {
                let what = if report.is_baseline() {
                    "baseline"
                } else {
                    "reservations"
                };
                let name = if runs.len() == 1 {
                    what.to_owned()
                } else {
                    format!("{}: {what}", named.name)
                };
                (name, report)
            })
        })
        .collect();
    let pair = match runs {
        [a, b] => a.run.sale().zip(b.run.sale()),
        _ => None,
    };
    let mut out = String::from("<table>\n<thead><tr><th></th>");
    for (name, _) in &columns {
        let _ = write!(out, "<th>{}</th>", escape(name));
    }
    if let [a, b] = runs
        && pair.is_some()
    {
        let _ = write!(out, "<th>{} / {}</th>", escape(b.name), escape(a.name));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for figure in &FIGURES {
        let _ = write!(out, "<tr><td>{}</td>", figure.name);
        for (_, report) in &columns {
            let _ = write!(
                out,
                "<td>{}</td>",
                number((figure.of)(report), figure.digits)
            );
        }
        if let Some((a, b)) = pair {
            let _ = write!(out, "<td>{}</td>", ratio((figure.of)(a), (figure.of)(b)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// Each run's machine and settings, a column each.
fn setup(runs: &[Named<'_>]) -> String {
    let mut out = String::from("<table>\n<thead><tr><th></th>");
    for named in runs {
        let _ = write!(out, "<th>{}</th>", escape(named.name));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let mut rows: Vec<(&str, Vec<String>)> = vec![
        (
            "started",
            runs.iter().map(|n| n.run.started_at.clone()).collect(),
        ),
        (
            "seatflow",
            runs.iter()
                .map(|n| n.run.seatflow_version.clone())
                .collect(),
        ),
    ];
    let tables: Vec<Vec<(&str, String)>> = runs
        .iter()
        .map(|n| {
            let mut all = n.run.machine.rows();
            all.extend(n.run.settings.rows());
            all
        })
        .collect();
    if let Some(first) = tables.first() {
        for (i, (name, _)) in first.iter().enumerate() {
            rows.push((name, tables.iter().map(|t| t[i].1.clone()).collect()));
        }
    }
    for (name, values) in rows {
        let _ = write!(out, "<tr><td>{}</td>", escape(name));
        let differ = values.windows(2).any(|w| w[0] != w[1]);
        for value in values {
            if differ {
                let _ = write!(out, "<td><b>{}</b></td>", escape(&value));
            } else {
                let _ = write!(out, "<td>{}</td>", escape(&value));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// `value` with `digits` decimals and thousands separated by commas.
pub(super) fn number(value: f64, digits: usize) -> String {
    let text = format!("{:.*}", digits, value.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if fraction.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction}")
    }
}

/// `b / a`, or a dash where it means nothing.
pub(super) fn ratio(a: f64, b: f64) -> String {
    if a == 0.0 {
        if b == 0.0 {
            "=".to_owned()
        } else {
            "-".to_owned()
        }
    } else {
        format!("{:.2}x", b / a)
    }
}

/// Text safe inside HTML elements and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(number(1_234_567.0, 0), "1,234,567");
        assert_eq!(number(54_187.456, 2), "54,187.46");
        assert_eq!(number(999.0, 0), "999");
        assert_eq!(number(-1_000.0, 0), "-1,000");
        assert_eq!(number(0.0, 1), "0.0");
    }

    #[test]
    fn text_from_a_run_cannot_open_an_element() {
        assert_eq!(
            escape(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
