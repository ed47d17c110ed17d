//! The process's metrics as an OTLP export request (protobuf, for `POST /v1/metrics`): the
//! same registry `/metrics` serves, so a collector and a Prometheus scrape see the same numbers.
//! Counters become cumulative monotonic sums (OTLP drops Prometheus's `_total`; a collector's
//! Prometheus exporter puts it back), gauges gauges, histograms cumulative explicit-bucket
//! histograms; every point starts at the process's start.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::exposition::{Family, Kind, Value};

/// When the points were taken and since when they count (Unix nanoseconds).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start_unix_nano: u64,
    pub now_unix_nano: u64,
}

/// One export request of `families`, from the resource `resource` (`service.name`,
/// `service.instance.id`, ...).
pub fn request(
    families: &[Family],
    resource: &[(String, String)],
    window: Window,
) -> ExportMetricsServiceRequest {
    let metrics = families
        .iter()
        .filter(|family| !family.series.is_empty())
        .map(|family| metric(family, window))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: attributes(resource),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "seatflow".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn metric(family: &Family, window: Window) -> Metric {
    let numbers = || {
        family
            .series
            .iter()
            .filter_map(|series| match series.value {
                Value::Number(value) => Some(NumberDataPoint {
                    attributes: attributes(&series.labels),
                    start_time_unix_nano: window.start_unix_nano,
                    time_unix_nano: window.now_unix_nano,
                    value: Some(number(value)),
                    ..Default::default()
                }),
                Value::Histogram(_) => None,
            })
            .collect()
    };
    let data = match family.kind {
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: numbers(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Kind::Gauge | Kind::Other => metric::Data::Gauge(Gauge {
            data_points: numbers(),
        }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: family
                .series
                .iter()
                .filter_map(|series| match &series.value {
                    Value::Histogram(histogram) => Some(HistogramDataPoint {
                        attributes: attributes(&series.labels),
                        start_time_unix_nano: window.start_unix_nano,
                        time_unix_nano: window.now_unix_nano,
                        count: histogram.count,
                        sum: Some(histogram.sum),
                        // OTLP counts each bucket on its own; the text counts at-or-below.
                        bucket_counts: histogram
                            .buckets
                            .iter()
                            .scan(0, |below, &(_, at_or_below)| {
                                let own = at_or_below.saturating_sub(*below);
                                *below = at_or_below;
                                Some(own)
                            })
                            .collect(),
                        explicit_bounds: histogram
                            .buckets
                            .iter()
                            .map(|&(bound, _)| bound)
                            .filter(|bound| bound.is_finite())
                            .collect(),
                        ..Default::default()
                    }),
                    Value::Number(_) => None,
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
    };
    Metric {
        name: family.name.clone(),
        description: family.help.clone(),
        unit: if family.name.ends_with("_seconds") {
            "s".to_owned()
        } else {
            String::new()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// Whole numbers (every counter and integer gauge) as integers, the rest as doubles.
fn number(value: f64) -> number_data_point::Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        number_data_point::Value::AsInt(value as i64)
    } else {
        number_data_point::Value::AsDouble(value)
    }
}

fn attributes(pairs: &[(String, String)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.clone())),
            }),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{HistogramValue, Series};

    fn labels(route: &str) -> Vec<(String, String)> {
        vec![("route".to_owned(), route.to_owned())]
    }

    const WINDOW: Window = Window {
        start_unix_nano: 1_000,
        now_unix_nano: 2_000,
    };

    #[test]
    fn counters_are_cumulative_sums_and_histograms_count_each_bucket_on_its_own() {
        let families = vec![
            Family {
                name: "requests".into(),
                help: "Requests".into(),
                kind: Kind::Counter,
                series: vec![Series {
                    labels: labels("/a"),
                    value: Value::Number(7.0),
                }],
            },
            Family {
                name: "lag_seconds".into(),
                help: "Lag".into(),
                kind: Kind::Gauge,
                series: vec![Series {
                    labels: vec![],
                    value: Value::Number(0.25),
                }],
            },
            Family {
                name: "latency_seconds".into(),
                help: "Latency".into(),
                kind: Kind::Histogram,
                series: vec![Series {
                    labels: labels("/a"),
                    value: Value::Histogram(HistogramValue {
                        buckets: vec![(0.1, 1), (1.0, 3), (f64::INFINITY, 4)],
                        sum: 6.25,
                        count: 4,
                    }),
                }],
            },
            Family {
                name: "never_written".into(),
                help: "A family without series".into(),
                kind: Kind::Counter,
                series: vec![],
            },
        ];
        let resource = vec![("service.name".to_owned(), "seatflow-test".to_owned())];

        let request = request(&families, &resource, WINDOW);

        let resource_metrics = &request.resource_metrics[0];
        assert_eq!(
            resource_metrics
                .resource
                .as_ref()
                .expect("resource")
                .attributes,
            attributes(&resource)
        );
        let metrics = &resource_metrics.scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 3, "a family without series is not sent");
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("a counter is a sum: {:?}", metrics[0]);
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(7))
        );
        assert_eq!(sum.data_points[0].attributes, attributes(&labels("/a")));
        assert_eq!(
            (
                sum.data_points[0].start_time_unix_nano,
                sum.data_points[0].time_unix_nano
            ),
            (1_000, 2_000)
        );
        let Some(metric::Data::Gauge(gauge)) = &metrics[1].data else {
            panic!("a gauge: {:?}", metrics[1]);
        };
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.25))
        );
        assert_eq!(metrics[1].unit, "s");
        let Some(metric::Data::Histogram(histogram)) = &metrics[2].data else {
            panic!("a histogram: {:?}", metrics[2]);
        };
        let point = &histogram.data_points[0];
        assert_eq!(point.explicit_bounds, vec![0.1, 1.0]);
        assert_eq!(point.bucket_counts, vec![1, 2, 1]);
        assert_eq!((point.count, point.sum), (4, Some(6.25)));
    }

    #[test]
    fn the_registry_exports_what_it_serves() {
        let metrics = crate::Metrics::new();
        metrics.reservation("confirmed");
        metrics.reservation("confirmed");
        metrics.batch_decided(3, std::time::Duration::from_millis(2));
        let families = crate::exposition::parse(&metrics.encode()).expect("parse");

        let request = request(&families, &[], WINDOW);

        let exported = &request.resource_metrics[0].scope_metrics[0].metrics;
        let reservations = exported
            .iter()
            .find(|m| m.name == "seatflow_reservation_requests")
            .expect("reservations");
        let Some(metric::Data::Sum(sum)) = &reservations.data else {
            panic!("a sum");
        };
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(2))
        );
        let decisions = exported
            .iter()
            .find(|m| m.name == "seatflow_seat_processor_decision_seconds")
            .expect("decisions");
        let Some(metric::Data::Histogram(histogram)) = &decisions.data else {
            panic!("a histogram");
        };
        assert_eq!(histogram.data_points[0].count, 3);
        assert_eq!(
            histogram.data_points[0].bucket_counts.iter().sum::<u64>(),
            3
        );
    }
}
