//! `--runs N`: the whole benchmark N times in a row, each run's report as it ends, then
//! one table of every figure's minimum, median and maximum over the runs, and of its
//! ratios to wireguard-go's and boringtun-cli's. A ratio is taken within each run (the
//! targets are "in the same run": the host's speed swings between runs, see the steal
//! row) and only then summarised, never as a ratio of two medians. Issue 8 asks for three
//! runs reported this way; sessions copied the figures into tables by hand, and one note
//! printed a pinned table under an unpinned heading.

use crate::suite::Figures;

/// The tunnels' figures of one run, by implementation name.
pub type Run<'a> = Vec<(&'a str, &'a Figures)>;

/// What the summary tells of one figure over the runs that have it.
#[derive(Debug, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// How many runs had the figure.
    pub count: usize,
}

/// The spread of `values`; `None` when there are none. The median of an even count is the
/// mean of the middle two.
pub fn spread(mut values: Vec<f64>) -> Option<Spread> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let (&min, &max) = (values.first()?, values.last()?);
    let mid = values.len() / 2;
    let median = match values.len() % 2 {
        1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    };
    Some(Spread {
        min,
        median,
        max,
        count: values.len(),
    })
}

/// `name`'s figure (picked by `pick`) divided by `reference`'s in each run where both
/// were measured and the reference is above zero.
pub fn ratios(
    runs: &[Run],
    name: &str,
    reference: &str,
    pick: impl Fn(&Figures) -> Option<f64>,
) -> Vec<f64> {
    let figure = |run: &Run, who: &str| {
        let (_, f) = run.iter().find(|(n, _)| *n == who)?;
        pick(f)
    };
    runs.iter()
        .filter_map(|run| Some((figure(run, name)?, figure(run, reference)?)))
        .filter(|(_, r)| *r > 0.0)
        .map(|(v, r)| v / r)
        .collect()
}

/// The figure in each run that has it.
pub fn values(runs: &[Run], name: &str, pick: impl Fn(&Figures) -> Option<f64>) -> Vec<f64> {
    (runs.iter())
        .filter_map(|run| pick(run.iter().find(|(n, _)| *n == name)?.1))
        .collect()
}

/// "min / median / max", with "(K of N runs)" when some runs lack the figure.
pub fn cell(spread: Option<Spread>, runs: usize, digits: usize) -> String {
    let Some(s) = spread else {
        return "-".into();
    };
    let missing = match s.count < runs {
        true => format!(" ({} of {runs})", s.count),
        false => String::new(),
    };
    format!(
        "{:.digits$} / {:.digits$} / {:.digits$}{missing}",
        s.min, s.median, s.max
    )
}

/// The implementations the ratios are taken against, as the targets name them.
pub const REFERENCES: [&str; 2] = ["wireguard-go", "boringtun-cli"];

/// A figure: its label, where it is in `Figures`, and its decimals.
pub type Row = (&'static str, fn(&Figures) -> Option<f64>, usize);

/// Prints the summary of `runs` for the figures `rows`: per implementation column, the
/// figure's spread, then a line per reference with the spread of the ratios to it; then
/// the `shares` (per cent of something, where a ratio means nothing), spread only.
pub fn print_summary(runs: &[Run], rows: &[Row], shares: &[Row]) {
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in runs.iter().flatten() {
        if !names.contains(name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return;
    }
    println!();
    println!(
        "over {} runs: min / median / max (a ratio is taken within each run, then summarised)",
        runs.len()
    );
    print!("{:<34}", "figure");
    for name in &names {
        print!(" {name:>30}");
    }
    println!();
    for &(label, pick, digits) in rows {
        print!("{label:<34}");
        for name in &names {
            let spread = spread(values(runs, name, pick));
            print!(" {:>30}", cell(spread, runs.len(), digits));
        }
        println!();
        for reference in REFERENCES.iter().filter(|r| names.contains(r)) {
            print!("{:<34}", format!("  ÷ {reference}"));
            for name in &names {
                let text = match name == reference {
                    true => "-".into(),
                    false => cell(spread(ratios(runs, name, reference, pick)), runs.len(), 2),
                };
                print!(" {text:>30}");
            }
            println!();
        }
    }
    for &(label, pick, digits) in shares {
        print!("{label:<34}");
        for name in &names {
            print!(
                " {:>30}",
                cell(spread(values(runs, name, pick)), runs.len(), digits)
            );
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(mbps: Option<f64>) -> Figures {
        Figures {
            tcp1_mbps: mbps,
            ..Figures::default()
        }
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_one_of_an_even_count_the_mean_of_two() {
        let s = spread(vec![849.0, 1037.0, 481.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.count), (481.0, 849.0, 1037.0, 3));
        assert_eq!(spread(vec![4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(spread(vec![]), None);
        // A figure that could not be computed is not a value.
        assert_eq!(spread(vec![f64::NAN, 2.0]).unwrap().count, 1);
    }

    #[test]
    fn a_ratio_is_taken_within_each_run_not_between_medians() {
        // edgewire is twice wireguard-go in each run, while the medians' ratio would be
        // 300 / 250 = 1.2.
        let figures = [
            (tcp(Some(200.0)), tcp(Some(100.0))),
            (tcp(Some(300.0)), tcp(Some(150.0))),
            (tcp(Some(800.0)), tcp(Some(400.0))),
            (tcp(Some(100.0)), tcp(Some(250.0))),
        ];
        let runs: Vec<Run> = (figures.iter())
            .map(|(e, w)| vec![("edgewire", e), ("wireguard-go", w)])
            .collect();
        let r = ratios(&runs, "edgewire", "wireguard-go", |f| f.tcp1_mbps);
        assert_eq!(r, vec![2.0, 2.0, 2.0, 0.4]);
        assert_eq!(spread(r).unwrap().median, 2.0);
    }

    #[test]
    fn a_run_without_the_figure_or_the_reference_is_left_out_and_said() {
        let (e, w, none, zero) = (
            tcp(Some(300.0)),
            tcp(Some(100.0)),
            tcp(None),
            tcp(Some(0.0)),
        );
        let runs: Vec<Run> = vec![
            vec![("edgewire", &e), ("wireguard-go", &w)],
            vec![("edgewire", &none), ("wireguard-go", &w)],
            vec![("edgewire", &e), ("wireguard-go", &zero)],
            vec![("edgewire", &e)],
        ];
        let pick = |f: &Figures| f.tcp1_mbps;
        assert_eq!(ratios(&runs, "edgewire", "wireguard-go", pick), vec![3.0]);
        assert_eq!(values(&runs, "edgewire", pick), vec![300.0; 3]);
        assert_eq!(
            cell(spread(values(&runs, "edgewire", pick)), 4, 0),
            "300 / 300 / 300 (3 of 4)"
        );
        assert_eq!(
            cell(spread(values(&runs, "boringtun-cli", pick)), 4, 0),
            "-"
        );
        assert_eq!(
            cell(spread(vec![1.0, 2.0, 4.0]), 3, 2),
            "1.00 / 2.00 / 4.00"
        );
    }
}
