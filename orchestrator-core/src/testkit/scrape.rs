//! Reading a Prometheus text-format scrape (`GET /metrics`, `Metrics::encode`) in tests:
//! the one sample reader the unit and integration tests of every crate share. Pure:
//! parses text, nothing else.
//!
//! A sample line is `name{k="v",...} value` (labels optional); comment lines (`#`) are
//! skipped. Label values containing `",` are not supported (none of ours do).

/// The labels of a series (`name{a="x",b="y"}`), as sorted pairs.
pub fn labels_of(series: &str) -> Vec<(String, String)> {
    let Some((_, rest)) = series.split_once('{') else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = rest
        .trim_end_matches('}')
        .split("\",")
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.trim_matches('"').to_owned()))
        })
        .collect();
    out.sort();
    out
}

/// Every sample of family `name` in `text` whose labels include `want`: (labels, value).
pub fn samples(text: &str, name: &str, want: &[(&str, &str)]) -> Vec<(Vec<(String, String)>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == name).then(|| (labels_of(series), value.trim().parse::<f64>().ok()))
        })
        .filter_map(|(labels, value)| Some((labels, value?)))
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .collect()
}

/// The one sample of `name` in `text` with exactly the labels `want` (in any order), if
/// any.
pub fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples(text, name, want)
        .into_iter()
        .find(|(labels, _)| labels.len() == want.len())
        .map(|(_, v)| v)
}

/// The value of `series` in `text`, written as it is encoded (`name{a="x",b="y"}` or an
/// unlabelled `name`); the labels may come in any order.
pub fn value(text: &str, series: &str) -> Option<f64> {
    let name = series.split('{').next().unwrap_or(series);
    let labels = labels_of(series);
    let want: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sample(text, name, &want)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
# HELP bannou_x_total Things.
# TYPE bannou_x_total counter
bannou_x_total{pool=\"a\",state=\"leased\"} 3
bannou_x_total{pool=\"a\"} 2
bannou_x_total{pool=\"b\",state=\"leased\"} 5
bannou_up 1
bannou_upper 7
";

    #[test]
    fn a_sample_is_found_by_its_exact_labels_in_any_order() {
        assert_eq!(
            sample(SCRAPE, "bannou_x_total", &[("pool", "a")]),
            Some(2.0)
        );
        assert_eq!(
            sample(
                SCRAPE,
                "bannou_x_total",
                &[("state", "leased"), ("pool", "a")]
            ),
            Some(3.0)
        );
        assert_eq!(sample(SCRAPE, "bannou_x_total", &[("pool", "c")]), None);
        assert_eq!(sample(SCRAPE, "bannou_up", &[]), Some(1.0));
        assert_eq!(
            sample(SCRAPE, "bannou_x_total", &[]),
            None,
            "no unlabelled sample"
        );
    }

    #[test]
    fn samples_are_those_whose_labels_include_the_wanted_ones() {
        let leased = samples(SCRAPE, "bannou_x_total", &[("state", "leased")]);
        let values: Vec<f64> = leased.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [3.0, 5.0]);
        assert_eq!(samples(SCRAPE, "bannou_x_total", &[]).len(), 3);
    }

    #[test]
    fn a_series_as_encoded_reads_its_value_and_no_other_familys() {
        assert_eq!(
            value(SCRAPE, r#"bannou_x_total{state="leased",pool="b"}"#),
            Some(5.0)
        );
        assert_eq!(value(SCRAPE, "bannou_up"), Some(1.0));
        assert_eq!(value(SCRAPE, "bannou_upp"), None);
        assert_eq!(value(SCRAPE, "# HELP"), None);
    }
}
