//! A scrape of `/metrics`, parsed: the samples of the Prometheus text
//! format 0.0.4 or OpenMetrics 1.0 (with exemplars), looked up by name and
//! labels. `TestProxy::metrics` returns one; tests ask for a series'
//! `value` or the `sum` over several, never search the text themselves.

use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
    /// OpenMetrics only: the exemplar's labels and value.
    pub exemplar: Option<(Labels, f64)>,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses an exposition; a line that is not a comment and not a sample
    /// is a test failure, naming the line.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| sample(l).unwrap_or_else(|why| panic!("bad exposition line ({why}): {l:?}\n{text}")))
            .collect();
        Metrics { text: text.to_string(), samples }
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one series named `name` with `labels` (a subset of
    /// its labels): `None` when there is none; a test failure when the
    /// labels name more than one series (ask `sum` for that).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        match found[..] {
            [] => None,
            [one] => Some(one.value),
            _ => panic!("{name} {labels:?} names {} series, not one: {found:#?}", found.len()),
        }
    }

    /// The sum over every series named `name` with `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Whether any series is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

/// `name{labels} value [timestamp] [# {labels} value [timestamp]]`.
fn sample(line: &str) -> Result<Sample, String> {
    let (series, rest) = match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            let (labels, after) = labels(&line[i + 1..])?;
            ((&line[..i], labels), after)
        }
        Some(i) => ((&line[..i], Labels::new()), &line[i..]),
        None => return Err("no value".into()),
    };
    let (sample_part, exemplar_part) = match rest.split_once(" # ") {
        Some((s, e)) => (s, Some(e)),
        None => (rest, None),
    };
    let value = number(sample_part.split_whitespace().next().ok_or("no value")?)?;
    let exemplar = match exemplar_part {
        None => None,
        Some(e) => {
            let e = e.trim_start().strip_prefix('{').ok_or("an exemplar without labels")?;
            let (labels, after) = labels(e)?;
            Some((labels, number(after.split_whitespace().next().ok_or("an exemplar without a value")?)?))
        }
    };
    let (name, labels) = series;
    if name.is_empty() {
        return Err("no metric name".into());
    }
    Ok(Sample { name: name.to_string(), labels, value, exemplar })
}

/// Labels up to and including the closing `}`; returns what follows it.
/// Values are quoted with `\\`, `\"` and `\n` escaped.
fn labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut out = Labels::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok((out, after));
        }
        let (key, after) = s.split_once("=\"").ok_or("a label without =\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an escape at the end".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        out.insert(key.trim().to_string(), value);
        s = &after[end + 1..];
    }
}

fn number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|e| format!("{s:?} is not a number: {e}")),
    }
}
