//! "Did you mean": the known word nearest to a misspelt one, for errors that name what was
//! meant (`ramping-vu` → `ramping-vus`, `erorr_rate` → `error_rate`).

/// The known word within a small edit distance of `word` (2, or a quarter of its length),
/// the nearest first; None when nothing is that close.
pub fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance; inputs are spec words (short, and bounded by the spec's size).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let v = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            cur.push(v);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn a_near_miss_names_what_was_meant() {
        let known = ["constant-vus", "ramping-vus", "per-vu-iterations"];
        assert_eq!(closest("ramping-vu", &known), Some("ramping-vus"));
        assert_eq!(
            closest("erorr_rate", &["error_rate", "errors"]),
            Some("error_rate")
        );
        assert_eq!(closest("banana", &known), None);
    }
}
