//! Reads the OpenMetrics text that [`Metrics::encode`](crate::Metrics::encode) writes back into
//! values: prometheus-client has no other way to read a family or a histogram, and the OTLP
//! export ([`crate::otlp`]) needs the values, not the text. One registry, two ways out: the
//! scrape and the push always agree.

use std::fmt;

/// One metric family: its `# TYPE` and `# HELP`, and a series per label set.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub series: Vec<Series>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// Any other OpenMetrics type (info, stateset, unknown...): kept as plain numbers.
    Other,
}

/// The values of one label set.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// In the order written, `le` excluded.
    pub labels: Vec<(String, String)>,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Histogram(HistogramValue),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramValue {
    /// Each bucket's upper bound (`le`) and the observations at or below it (cumulative, as
    /// written); the last bound is `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// A line the reader did not understand, with its number (from 1).
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Every family of an OpenMetrics text exposition, in the order written.
pub fn parse(text: &str) -> Result<Vec<Family>, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fail = |reason: String| ParseError {
            line: index + 1,
            reason,
        };
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            family_named(&mut families, name).help = unescape(help);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| fail("a TYPE line without a type".to_owned()))?;
            family_named(&mut families, name).kind = match kind {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                _ => Kind::Other,
            };
        } else if line.starts_with('#') {
            // UNIT and comments: the name carries the unit already.
        } else {
            let sample = sample(line).map_err(fail)?;
            let family = families
                .iter_mut()
                .rev()
                .find(|f| sample.name.starts_with(f.name.as_str()))
                .ok_or_else(|| fail(format!("{} belongs to no family", sample.name)))?;
            let suffix = &sample.name[family.name.len()..];
            add(family, suffix, sample.labels, sample.value).map_err(fail)?;
        }
    }
    Ok(families)
}

fn family_named<'a>(families: &'a mut Vec<Family>, name: &str) -> &'a mut Family {
    let at = match families.iter().position(|f| f.name == name) {
        Some(at) => at,
        None => {
            families.push(Family {
                name: name.to_owned(),
                help: String::new(),
                kind: Kind::Other,
                series: Vec::new(),
            });
            families.len() - 1
        }
    };
    &mut families[at]
}

struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// `name{label="value",...} value [timestamp]`
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inside)?;
        labels = parsed;
        rest = after;
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let value = number(value).ok_or_else(|| format!("{value:?} is not a number"))?;
    Ok(Sample {
        name,
        labels,
        value,
    })
}

type Labels = Vec<(String, String)>;

/// The labels up to the closing `}`, and what follows it.
fn label_set(mut text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after_key) = text
            .split_once("=\"")
            .ok_or_else(|| format!("a label without a value in {text:?}"))?;
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => return Err("a label value ends in a backslash".to_owned()),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => value.push(c),
                None => return Err(format!("label {key:?} is not closed")),
            }
        };
        labels.push((key.to_owned(), value));
        text = &after_key[end + 1..];
    }
}

fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(escaped) => out.push(escaped),
            None => out.push('\\'),
        }
    }
    out
}

/// One sample into its family: `_total` and plain samples are the value; a histogram's
/// `_bucket`, `_sum` and `_count` fill the series of its labels (`le` apart).
fn add(
    family: &mut Family,
    suffix: &str,
    mut labels: Vec<(String, String)>,
    value: f64,
) -> Result<(), String> {
    if family.kind != Kind::Histogram {
        return match suffix {
            "" | "_total" => {
                family.series.push(Series {
                    labels,
                    value: Value::Number(value),
                });
                Ok(())
            }
            // A counter's creation time: OTLP's start time is the process's.
            "_created" => Ok(()),
            _ => Err(format!("{}{suffix} is not a sample of it", family.name)),
        };
    }
    let le = labels
        .iter()
        .position(|(key, _)| key == "le")
        .map(|at| labels.remove(at).1);
    let at = match family.series.iter().position(|s| s.labels == labels) {
        Some(at) => at,
        None => {
            family.series.push(Series {
                labels,
                value: Value::Histogram(HistogramValue::default()),
            });
            family.series.len() - 1
        }
    };
    let Value::Histogram(histogram) = &mut family.series[at].value else {
        unreachable!("a histogram family holds histogram series");
    };
    match (suffix, le) {
        ("_bucket", Some(le)) => {
            let bound = number(&le).ok_or_else(|| format!("le={le:?} is not a number"))?;
            histogram.buckets.push((bound, value as u64));
        }
        ("_sum", None) => histogram.sum = value,
        ("_count", None) => histogram.count = value as u64,
        ("_created", None) => {}
        _ => return Err(format!("{}{suffix} is not a histogram sample", family.name)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family as LabelledFamily;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;
    use proptest::prelude::*;

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn reads_back_counters_gauges_and_histograms_by_label_set() {
        let mut registry = Registry::default();
        let requests = LabelledFamily::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "requests",
            "Requests by outcome (one, two)",
            requests.clone(),
        );
        let parked = Gauge::<i64>::default();
        registry.register("parked", "Parked", parked.clone());
        let latency =
            LabelledFamily::<Vec<(String, String)>, Histogram>::new_with_constructor(|| {
                Histogram::new([0.1, 1.0])
            });
        registry.register("latency_seconds", "Latency", latency.clone());
        let labels = |route: &str| vec![("route".to_owned(), route.to_owned())];
        requests.get_or_create(&labels("confirmed")).inc_by(3);
        requests.get_or_create(&labels("rejected")).inc();
        parked.set(-2);
        for seconds in [0.05, 0.5, 0.7, 5.0] {
            latency.get_or_create(&labels("/a")).observe(seconds);
        }
        latency.get_or_create(&labels("/b")).observe(0.01);

        let families = parse(&encode(&registry)).expect("parse");

        assert_eq!(families.len(), 3);
        let requests = &families[0];
        assert_eq!(
            (requests.name.as_str(), requests.kind),
            ("requests", Kind::Counter)
        );
        // prometheus-client ends every help with a full stop.
        assert_eq!(requests.help, "Requests by outcome (one, two).");
        let mut counted: Vec<_> = requests
            .series
            .iter()
            .map(|s| (s.labels.clone(), s.value.clone()))
            .collect();
        counted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            counted,
            vec![
                (labels("confirmed"), Value::Number(3.0)),
                (labels("rejected"), Value::Number(1.0)),
            ]
        );
        assert_eq!(families[1].kind, Kind::Gauge);
        assert_eq!(families[1].series[0].value, Value::Number(-2.0));
        let latency = &families[2];
        assert_eq!(latency.kind, Kind::Histogram);
        let a = latency
            .series
            .iter()
            .find(|s| s.labels == labels("/a"))
            .expect("/a");
        assert_eq!(
            a.value,
            Value::Histogram(HistogramValue {
                buckets: vec![(0.1, 1), (1.0, 3), (f64::INFINITY, 4)],
                sum: 6.25,
                count: 4,
            })
        );
    }

    #[test]
    fn a_sample_of_no_family_or_a_broken_label_is_an_error_naming_its_line() {
        assert_eq!(
            parse("# TYPE a counter\na_total 1\nb 2\n")
                .expect_err("b")
                .line,
            3
        );
        assert_eq!(
            parse("# TYPE a gauge\na{x=\"1} 2\n")
                .expect_err("open")
                .line,
            2
        );
        assert_eq!(
            parse("# TYPE a gauge\na{x=\"1\"} many\n")
                .expect_err("value")
                .line,
            2
        );
    }

    proptest! {
        /// Whatever is observed, the text reads back as the same counts per bucket, count and
        /// sum, for every label set.
        #[test]
        fn histograms_read_back_as_observed(
            observations in proptest::collection::vec(("[a-z/:_]{1,12}", 0.0f64..20.0), 0..60),
            counted in proptest::collection::vec(("[a-zA-Z0-9 ._-]{0,12}", 0u64..1_000), 0..8),
        ) {
            let mut registry = Registry::default();
            let histograms = LabelledFamily::<Vec<(String, String)>, Histogram>::new_with_constructor(
                || Histogram::new([0.001, 0.01, 0.1, 1.0, 10.0]),
            );
            registry.register("h", "H", histograms.clone());
            let counters = LabelledFamily::<Vec<(String, String)>, Counter>::default();
            registry.register("c", "C", counters.clone());
            for (route, seconds) in &observations {
                histograms.get_or_create(&vec![("route".to_owned(), route.clone())]).observe(*seconds);
            }
            let mut expected_counters = std::collections::BTreeMap::new();
            for (group, by) in &counted {
                counters.get_or_create(&vec![("group".to_owned(), group.clone())]).inc_by(*by);
                *expected_counters.entry(group.clone()).or_insert(0u64) += by;
            }

            let families = parse(&encode(&registry)).expect("parse");
            let series = |name: &str| families.iter().find(|f| f.name == name).map_or(&[][..], |f| &f.series[..]);

            let mut routes: Vec<&String> = observations.iter().map(|(r, _)| r).collect();
            routes.sort();
            routes.dedup();
            prop_assert_eq!(series("h").len(), routes.len());
            for series in series("h") {
                let route = &series.labels[0].1;
                let seen: Vec<f64> = observations.iter().filter(|(r, _)| r == route).map(|(_, s)| *s).collect();
                let Value::Histogram(h) = &series.value else { panic!("not a histogram") };
                prop_assert_eq!(h.count, seen.len() as u64);
                prop_assert!((h.sum - seen.iter().sum::<f64>()).abs() < 1e-9);
                for (bound, at_or_below) in &h.buckets {
                    prop_assert_eq!(*at_or_below, seen.iter().filter(|s| **s <= *bound).count() as u64);
                }
            }
            let read: std::collections::BTreeMap<String, u64> = series("c").iter().map(|s| {
                let Value::Number(n) = s.value else { panic!("not a number") };
                (s.labels[0].1.clone(), n as u64)
            }).collect();
            prop_assert_eq!(read, expected_counters);
        }
    }
}
