//! `/metrics` as JSON, for operators who run no Prometheus: the same
//! counters and gauges, and each histogram's count, sum, p50, p90 and p99.
//! Read from the exporter's own text, so the two never disagree.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

type Labels = BTreeMap<String, String>;

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct MetricsJson {
    pub counters: Vec<Sample>,
    pub gauges: Vec<Sample>,
    pub histograms: Vec<Distribution>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// A histogram or summary. Percentiles of a bucketed histogram are
/// interpolated within their bucket, as Prometheus' `histogram_quantile`
/// does; a summary's are its own quantiles (over its rolling window).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Distribution {
    pub name: String,
    pub labels: Labels,
    pub count: u64,
    pub sum: f64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Default)]
struct Building {
    count: u64,
    sum: f64,
    quantiles: Vec<(f64, f64)>,
    buckets: Vec<(f64, f64)>,
}

/// Parses Prometheus text exposition (the subset the exporter writes).
pub fn from_text(text: &str) -> MetricsJson {
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = MetricsJson::default();
    let mut dists: BTreeMap<(String, Labels), Building> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.insert(name, kind.trim());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, mut labels, value)) = sample(line) else {
            continue;
        };
        let family = |suffix: &str| name.strip_suffix(suffix).filter(|f| types.contains_key(f));
        match types.get(name.as_str()).copied() {
            Some("counter") => out.counters.push(Sample { name, labels, value }),
            Some("gauge") | Some("untyped") => out.gauges.push(Sample { name, labels, value }),
            Some("summary") => {
                let q = labels.remove("quantile").and_then(|q| q.parse().ok());
                if let Some(q) = q {
                    dists
                        .entry((name, labels))
                        .or_default()
                        .quantiles
                        .push((q, value));
                }
            }
            _ => {
                if let Some(f) = family("_bucket") {
                    let le = labels.remove("le").and_then(|le| parse_f64(&le));
                    if let Some(le) = le {
                        dists
                            .entry((f.to_owned(), labels))
                            .or_default()
                            .buckets
                            .push((le, value));
                    }
                } else if let Some(f) = family("_sum") {
                    dists.entry((f.to_owned(), labels)).or_default().sum = value;
                } else if let Some(f) = family("_count") {
                    dists.entry((f.to_owned(), labels)).or_default().count = value as u64;
                } else {
                    out.gauges.push(Sample { name, labels, value });
                }
            }
        }
    }
    for ((name, labels), b) in dists {
        let at = |q: f64| {
            if b.buckets.is_empty() {
                b.quantiles
                    .iter()
                    .find(|(x, _)| (*x - q).abs() < 1e-9)
                    .map(|(_, v)| *v)
            } else {
                bucket_quantile(q, &b.buckets)
            }
        };
        out.histograms.push(Distribution {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            name,
            labels,
            count: b.count,
            sum: b.sum,
        });
    }
    out
}

fn parse_f64(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// `name{a="b",c="d"} value`, label values unescaped.
fn sample(line: &str) -> Option<(String, Labels, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = parse_f64(value.trim())?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head.trim().to_owned(), Labels::new(), value));
    };
    let mut labels = Labels::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').trim().to_owned();
        if key.is_empty() || key == "}" {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut val = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    other => val.push(other),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        labels.insert(key, val);
        if chars.peek() == Some(&'}') {
            break;
        }
    }
    Some((name.to_owned(), labels, value))
}

/// `histogram_quantile` over cumulative buckets `(le, count)`.
fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut buckets = buckets.to_vec();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let width = count - below;
            let within = if width > 0.0 { (rank - below) / width } else { 1.0 };
            return Some(lower + (le - lower) * within);
        }
        (lower, below) = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE http_requests_total counter
http_requests_total{method="POST",route="/v1/wallets",status="201"} 3
# TYPE db_pool_connections gauge
db_pool_connections 7
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route="/x",le="0.1"} 50
http_request_duration_seconds_bucket{route="/x",le="0.2"} 100
http_request_duration_seconds_bucket{route="/x",le="+Inf"} 100
http_request_duration_seconds_sum{route="/x"} 9.5
http_request_duration_seconds_count{route="/x"} 100
# TYPE webhook_processing_seconds summary
webhook_processing_seconds{quantile="0.5"} 0.02
webhook_processing_seconds{quantile="0.9"} 0.05
webhook_processing_seconds{quantile="0.99"} 0.08
webhook_processing_seconds_sum 1.5
webhook_processing_seconds_count 40
"#;

    #[test]
    fn counters_gauges_and_percentiles() {
        let m = from_text(TEXT);
        assert_eq!(m.counters.len(), 1);
        assert_eq!(m.counters[0].labels["route"], "/v1/wallets");
        assert_eq!(m.counters[0].value, 3.0);
        assert_eq!(m.gauges[0].name, "db_pool_connections");
        let h = m
            .histograms
            .iter()
            .find(|h| h.name == "http_request_duration_seconds")
            .unwrap();
        assert_eq!((h.count, h.sum), (100, 9.5));
        assert_eq!(h.labels["route"], "/x");
        assert!((h.p50.unwrap() - 0.1).abs() < 1e-9);
        assert!((h.p90.unwrap() - 0.18).abs() < 1e-9);
        let s = m
            .histograms
            .iter()
            .find(|h| h.name == "webhook_processing_seconds")
            .unwrap();
        assert_eq!((s.count, s.p50, s.p99), (40, Some(0.02), Some(0.08)));
    }

    #[test]
    fn label_values_are_unescaped() {
        let (_, labels, v) = sample(r#"m{a="x\"y",b="c,d"} 2"#).unwrap();
        assert_eq!(
            (labels["a"].as_str(), labels["b"].as_str(), v),
            ("x\"y", "c,d", 2.0)
        );
    }
}
