//! "Did you mean": the known word closest to a misspelt one, when it is close enough
//! that the guess is more likely right than noise.

/// The candidate nearest to `typed`, if it is within a couple of edits (fewer for
/// short words, so `ru` does not become `run` and `pubkey`).
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = match typed.trim_start_matches('-').chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .map(|c| (distance(typed, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// ` (did you mean X?)` or nothing.
pub fn hint<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(typed, candidates)
        .map(|c| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

/// Edit distance with adjacent transpositions (optimal string alignment): `stauts` is
/// one edit from `status`, as a person counts it.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMANDS: [&str; 5] = ["run", "keygen", "pubkey", "status", "manifest"];

    #[test]
    fn a_transposition_or_a_missing_letter_is_one_edit() {
        assert_eq!(distance("stauts", "status"), 1);
        assert_eq!(distance("manifst", "manifest"), 1);
        assert_eq!(distance("", "run"), 3);
    }

    #[test]
    fn close_misspellings_are_suggested_and_noise_is_not() {
        assert_eq!(closest("stauts", COMMANDS), Some("status"));
        assert_eq!(closest("manfiest", COMMANDS), Some("manifest"));
        assert_eq!(closest("rnu", COMMANDS), Some("run"));
        assert_eq!(closest("xy", COMMANDS), None);
        assert_eq!(closest("frobnicate", COMMANDS), None);
        assert_eq!(
            closest("--manifest-ur", ["--manifest-url", "--manifest-pubkey"]),
            Some("--manifest-url")
        );
        assert_eq!(hint("xyz", COMMANDS), "");
    }
}
