//! The pictures of a run: lines over the seconds of a run, drawn to SVG text (plotters; its text
//! is laid out without font files, so nothing outside the binary is needed).

use plotters::prelude::*;

use super::Second;

/// One line of a chart: a named run's seconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line<'a> {
    pub name: &'a str,
    pub seconds: &'a [Second],
    /// Which run it belongs to: a run's lines share its colour.
    pub run: usize,
    /// A lighter line: what the figures are compared with (the baseline).
    pub faint: bool,
}

/// What a chart shows of each second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measure {
    Answered,
    P50,
    P95,
    P99,
}

impl Measure {
    pub const ALL: [Measure; 4] = [Self::Answered, Self::P50, Self::P95, Self::P99];

    pub fn title(self) -> &'static str {
        match self {
            Self::Answered => "Answers per second",
            Self::P50 => "Latency P50 per second",
            Self::P95 => "Latency P95 per second",
            Self::P99 => "Latency P99 per second",
        }
    }

    /// A file name for the chart alone (`--charts`).
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Answered => "throughput.svg",
            Self::P50 => "latency-p50.svg",
            Self::P95 => "latency-p95.svg",
            Self::P99 => "latency-p99.svg",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Answered => "answers / s",
            _ => "ms",
        }
    }

    fn of(self, second: &Second) -> f64 {
        match self {
            Self::Answered => second.answered as f64,
            Self::P50 => second.latency_ms.p50,
            Self::P95 => second.latency_ms.p95,
            Self::P99 => second.latency_ms.p99,
        }
    }
}

/// Colours of the runs in order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// The chart of `measure` over the seconds of every line, as an SVG document.
pub(super) fn draw(measure: Measure, lines: &[Line<'_>]) -> anyhow::Result<String> {
    let points = |line: &Line<'_>| -> Vec<(f64, f64)> {
        line.seconds
            .iter()
            // A second without an answer has no latency: left out of the latency lines.
            .filter(|s| measure == Measure::Answered || s.answered > 0)
            .map(|s| (f64::from(s.second), measure.of(s)))
            .collect()
    };
    let all: Vec<Vec<(f64, f64)>> = lines.iter().map(points).collect();
    let x_end = all.iter().flatten().map(|p| p.0).fold(1.0, f64::max) + 1.0;
    let y_end = all.iter().flatten().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    let y_end = if y_end > 0.0 { y_end } else { 1.0 };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 320)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(measure.title(), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_end, 0f64..y_end)?;
        let y_digits = if measure == Measure::Answered { 0 } else { 1 };
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc(measure.unit())
            .x_label_formatter(&|x| {
                if x.fract() == 0.0 {
                    format!("{x:.0}")
                } else {
                    format!("{x:.1}")
                }
            })
            .y_label_formatter(&|y| super::page::number(*y, y_digits))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (line, points) in lines.iter().zip(all) {
            let base = COLOURS[line.run % COLOURS.len()];
            let style = if line.faint {
                base.mix(0.45).stroke_width(2)
            } else {
                base.stroke_width(2)
            };
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(line.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Latency;

    fn second(second: u32, answered: u64, p99: f64) -> Second {
        Second {
            second,
            answered,
            latency_ms: Latency {
                p99,
                ..Latency::default()
            },
        }
    }

    #[test]
    fn every_line_is_drawn_with_its_name() {
        let run = [second(0, 100, 5.0), second(1, 300, 9.0)];
        let baseline = [second(0, 500, 2.0), second(1, 520, 2.5), second(2, 0, 0.0)];
        let svg = draw(
            Measure::P99,
            &[
                Line {
                    name: "reserve",
                    seconds: &run,
                    run: 0,
                    faint: false,
                },
                Line {
                    name: "baseline",
                    seconds: &baseline,
                    run: 1,
                    faint: true,
                },
            ],
        )
        .expect("drawn");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("Latency P99 per second"));
        // plotters writes a text's content on a line of its own.
        assert!(svg.lines().any(|l| l == "reserve"), "{svg}");
        assert!(svg.lines().any(|l| l == "baseline"), "{svg}");
        // Each line drawn in its colour, and once more in the legend; the baseline faint.
        let lines_of = |stroke: &str| -> Vec<&str> {
            svg.lines()
                .filter(|l| l.contains(stroke) && l.contains(r#"stroke-width="2""#))
                .collect()
        };
        let (reserve, baseline) = (lines_of("#1F77B4"), lines_of("#D62728"));
        assert_eq!((reserve.len(), baseline.len()), (2, 2), "{svg}");
        assert!(
            baseline.iter().all(|l| l.contains(r#"opacity="0.45""#)),
            "{svg}"
        );
        // The quiet second of the baseline is left out of its latency line: two points.
        let points = baseline[0]
            .split("points=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("points");
        assert_eq!(points.split_whitespace().count(), 2, "{svg}");
    }
}
