//! Selector evaluation over a fleet's devices through an inverted label index, so selecting
//! costs roughly the number of candidate devices rather than devices × deployments.

use std::collections::{BTreeMap, HashMap};

use crate::model::{MatchExpression, Selector};

/// Devices of one fleet, indexed by label.
pub struct DeviceIndex<'a> {
    labels: Vec<(usize, &'a BTreeMap<String, String>)>,
    by_pair: HashMap<(&'a str, &'a str), Vec<u32>>,
    by_key: HashMap<&'a str, Vec<u32>>,
}

impl<'a> DeviceIndex<'a> {
    /// Indexes `(device id, labels)` pairs; ids are returned by [`DeviceIndex::select`].
    pub fn new(devices: impl IntoIterator<Item = (usize, &'a BTreeMap<String, String>)>) -> Self {
        let labels: Vec<_> = devices.into_iter().collect();
        let mut by_pair: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
        let mut by_key: HashMap<&str, Vec<u32>> = HashMap::new();
        for (pos, (_, l)) in labels.iter().enumerate() {
            for (k, v) in l.iter() {
                by_pair.entry((k.as_str(), v.as_str())).or_default().push(pos as u32);
                by_key.entry(k.as_str()).or_default().push(pos as u32);
            }
        }
        DeviceIndex { labels, by_pair, by_key }
    }

    /// The ids of the devices the selector matches, in indexing order.
    pub fn select(&self, sel: &Selector) -> Vec<usize> {
        static EMPTY: Vec<u32> = Vec::new();
        // The smallest posting list any positive term allows; every match is in it.
        let mut best: Option<Vec<u32>> = None;
        let mut consider = |c: Vec<u32>| {
            if best.as_ref().is_none_or(|b| c.len() < b.len()) {
                best = Some(c);
            }
        };
        for (k, v) in &sel.match_labels {
            consider(self.by_pair.get(&(k.as_str(), v.as_str())).unwrap_or(&EMPTY).clone());
        }
        for e in &sel.match_expressions {
            match e {
                MatchExpression::In { key, values } => {
                    let mut u: Vec<u32> = values.iter().flat_map(|v| self.by_pair.get(&(key.as_str(), v.as_str())).unwrap_or(&EMPTY)).copied().collect();
                    u.sort_unstable();
                    u.dedup();
                    consider(u);
                }
                MatchExpression::Exists { key } => consider(self.by_key.get(key.as_str()).unwrap_or(&EMPTY).clone()),
                MatchExpression::NotIn { .. } | MatchExpression::DoesNotExist { .. } => {}
            }
        }
        let check = |pos: usize| sel.matches(self.labels[pos].1).then_some(self.labels[pos].0);
        match best {
            Some(c) => c.into_iter().filter_map(|p| check(p as usize)).collect(),
            None => (0..self.labels.len()).filter_map(check).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn index_agrees_with_direct_evaluation() {
        let devices = [
            labels(&[("site", "a"), ("arch", "arm64")]),
            labels(&[("site", "a"), ("arch", "amd64"), ("gpu", "1")]),
            labels(&[("site", "b"), ("arch", "arm64")]),
            labels(&[]),
        ];
        let index = DeviceIndex::new(devices.iter().enumerate().map(|(i, l)| (i * 10, l)));
        let sel = |ml: &[(&str, &str)], ex: Vec<MatchExpression>| Selector { match_labels: labels(ml).into_iter().collect(), match_expressions: ex };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases = [
            sel(&[("site", "a")], vec![]),
            sel(&[], vec![MatchExpression::In { key: "arch".into(), values: s(&["arm64", "riscv"]) }]),
            sel(&[], vec![MatchExpression::NotIn { key: "site".into(), values: s(&["a"]) }]),
            sel(&[], vec![MatchExpression::Exists { key: "gpu".into() }]),
            sel(&[("site", "a")], vec![MatchExpression::DoesNotExist { key: "gpu".into() }]),
            sel(&[("site", "zzz")], vec![]),
        ];
        for c in &cases {
            let direct: Vec<usize> = devices.iter().enumerate().filter(|(_, l)| c.matches(l)).map(|(i, _)| i * 10).collect();
            assert_eq!(index.select(c), direct, "{c:?}");
        }
        assert_eq!(index.select(&cases[2]), vec![20, 30]);
    }
}
