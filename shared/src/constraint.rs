//! Version constraints, as `ext load --version`, `ext pull --version` and
//! `GET .../resolve?constraint=` take them. Built on the `semver` crate.
//!
//! | written | means |
//! |---|---|
//! | `` (empty), `*`, `latest` | the newest stable version |
//! | `1.2.3` | exactly 1.2.3 (a leading `v` is fine) |
//! | `1.2` | any 1.2.x |
//! | `^1.2.0` | >=1.2.0, <2.0.0 |
//! | `~1.2.0` | >=1.2.0, <1.3.0 |
//! | `>=1.2, <2` | every comparator holds (comma-joined set) |
//! | `1.2.0 - 1.5.0` | >=1.2.0, <=1.5.0 |
//! | `1.2.0-1.5.0` | the same: **a `-` whose right-hand side is a full version makes a range** |
//! | `1.0.0-rc.1` | exactly that pre-release (`rc.1` is not a full version) |
//!
//! **Pre-releases** are chosen only when the constraint names one (then
//! semver's rule applies: `>=1.0.0-rc.1` admits `1.0.0-rc.2` but not
//! `1.1.0-rc.1`), or when the caller allows them (`--pre`): then a
//! pre-release `X.Y.Z-p` counts as `X.Y.Z` would. A version the backend
//! flags as pre-release (Gitea can) is treated as one whatever its number.

use semver::{Version, VersionReq};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// Newest stable (or newest of all with pre-releases allowed).
    Latest,
    /// Inclusive range `low - high`.
    Range(Version, Version),
    /// Anything `semver::VersionReq` expresses.
    Req(VersionReq),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version constraint '{input}': {reason}")]
pub struct ConstraintError {
    pub input: String,
    pub reason: String,
}

fn full(s: &str) -> Option<Version> {
    Version::parse(s.trim().strip_prefix('v').unwrap_or(s.trim())).ok()
}

impl Constraint {
    pub fn parse(input: &str) -> Result<Constraint, ConstraintError> {
        let s = input.trim();
        let err = |reason: String| ConstraintError {
            input: input
                .chars()
                .take(128)
                .flat_map(char::escape_default)
                .collect(),
            reason,
        };
        // Measured as given (white space included), so a client's
        // length check (the OpenAPI maxLength) means the same.
        if input.len() > crate::MAX_NAME_LEN {
            return Err(err(format!("longer than {} bytes", crate::MAX_NAME_LEN)));
        }
        if s.is_empty() || s == "*" || s.eq_ignore_ascii_case("latest") {
            return Ok(Constraint::Latest);
        }
        // `A - B` (spaces) or `A-B` where both sides are full versions.
        if let Some((a, b)) = s.split_once(" - ") {
            return match (full(a), full(b)) {
                (Some(lo), Some(hi)) if lo <= hi => Ok(Constraint::Range(lo, hi)),
                (Some(lo), Some(hi)) => Err(err(format!("the range is empty: {lo} is above {hi}"))),
                _ => Err(err(
                    "both ends of a range must be full versions (1.2.0 - 1.5.0)".into(),
                )),
            };
        }
        if !s.contains([' ', ',', '^', '~', '<', '>', '=', '*']) {
            for (i, _) in s.match_indices('-') {
                if let (Some(lo), Some(hi)) = (full(&s[..i]), full(&s[i + 1..])) {
                    return if lo <= hi {
                        Ok(Constraint::Range(lo, hi))
                    } else {
                        Err(err(format!("the range is empty: {lo} is above {hi}")))
                    };
                }
            }
            // A bare version: exact when full, a wildcard when partial.
            let bare = s.strip_prefix('v').unwrap_or(s);
            return VersionReq::parse(&format!("={bare}"))
                .map(Constraint::Req)
                .map_err(|e| err(e.to_string()));
        }
        let norm: String = s
            .split(',')
            .map(|part| {
                let p = part.trim();
                // Allow `>= v1.2` as well as `>=1.2`.
                let op_len = p
                    .find(|c: char| c.is_ascii_digit() || c == 'v' || c == '*')
                    .unwrap_or(0);
                let (op, rest) = p.split_at(op_len);
                // A bare version is exact here too (semver alone reads `^`).
                let op = match op.trim() {
                    "" if rest != "*" => "=",
                    o => o,
                };
                format!("{op}{}", rest.strip_prefix('v').unwrap_or(rest))
            })
            .collect::<Vec<_>>()
            .join(", ");
        VersionReq::parse(&norm)
            .map(Constraint::Req)
            .map_err(|e| err(e.to_string()))
    }

    /// Whether `v` satisfies the constraint. `flagged_pre` marks a version
    /// the backend calls a pre-release; `allow_pre` is `--pre`.
    pub fn matches(&self, v: &Version, flagged_pre: bool, allow_pre: bool) -> bool {
        let is_pre = flagged_pre || !v.pre.is_empty();
        match self {
            Constraint::Latest => allow_pre || !is_pre,
            Constraint::Range(lo, hi) => {
                if is_pre && !allow_pre && !names_pre_range(lo, hi, v) {
                    return false;
                }
                lo <= v && v <= hi
                    || allow_pre && {
                        let s = strip(v);
                        *lo <= s && s <= *hi
                    }
            }
            Constraint::Req(req) => {
                if flagged_pre && v.pre.is_empty() && !allow_pre {
                    return false;
                }
                req.matches(v) || allow_pre && !v.pre.is_empty() && req.matches(&strip(v))
            }
        }
    }

    /// The highest of `versions` (with their pre-release flags) that
    /// satisfies the constraint.
    pub fn resolve<'a, T>(
        &self,
        items: impl IntoIterator<Item = &'a T>,
        key: impl Fn(&T) -> (&Version, bool),
        allow_pre: bool,
    ) -> Option<&'a T>
    where
        T: 'a,
    {
        items
            .into_iter()
            .filter(|t| {
                let (v, flagged) = key(t);
                self.matches(v, flagged, allow_pre)
            })
            .max_by(|a, b| key(a).0.cmp(key(b).0))
    }
}

/// A range end that is itself a pre-release with the same numbers admits
/// pre-releases of those numbers (as semver comparators do).
fn names_pre_range(lo: &Version, hi: &Version, v: &Version) -> bool {
    [lo, hi]
        .iter()
        .any(|b| !b.pre.is_empty() && (b.major, b.minor, b.patch) == (v.major, v.minor, v.patch))
}

fn strip(v: &Version) -> Version {
    Version::new(v.major, v.minor, v.patch)
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::Latest => f.write_str("latest"),
            Constraint::Range(lo, hi) => write!(f, "{lo} - {hi}"),
            Constraint::Req(r) => write!(f, "{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn pick(c: &str, vs: &[&str], pre: bool) -> Option<String> {
        let vs: Vec<Version> = vs.iter().map(|s| v(s)).collect();
        Constraint::parse(c)
            .unwrap()
            .resolve(&vs, |x| (x, false), pre)
            .map(|x| x.to_string())
    }

    const VS: [&str; 9] = [
        "1.1.0",
        "1.2.0",
        "1.2.5",
        "1.3.0-rc.1",
        "1.4.0",
        "1.5.0",
        "2.0.0-rc.1",
        "2.0.0",
        "2.1.0",
    ];

    #[test]
    fn the_table_in_the_docs() {
        assert_eq!(pick("", &VS, false).as_deref(), Some("2.1.0"));
        assert_eq!(pick("*", &VS, false).as_deref(), Some("2.1.0"));
        assert_eq!(pick("latest", &VS, false).as_deref(), Some("2.1.0"));
        assert_eq!(pick("1.2.0", &VS, false).as_deref(), Some("1.2.0"));
        assert_eq!(pick("v1.2.0", &VS, false).as_deref(), Some("1.2.0"));
        assert_eq!(pick("1.2", &VS, false).as_deref(), Some("1.2.5"));
        assert_eq!(pick("^1.2.0", &VS, false).as_deref(), Some("1.5.0"));
        assert_eq!(pick("~1.2.0", &VS, false).as_deref(), Some("1.2.5"));
        assert_eq!(pick(">=1.2, <2", &VS, false).as_deref(), Some("1.5.0"));
        assert_eq!(pick(">= v1.2, < 1.5", &VS, false).as_deref(), Some("1.4.0"));
        assert_eq!(pick("1.2.0 - 1.4.0", &VS, false).as_deref(), Some("1.4.0"));
        assert_eq!(pick("1.2.0-1.4.0", &VS, false).as_deref(), Some("1.4.0"));
        assert_eq!(
            pick("2.0.0-rc.1", &VS, false).as_deref(),
            Some("2.0.0-rc.1")
        );
        assert_eq!(pick("3.0.0", &VS, false), None);
    }

    #[test]
    fn a_hyphen_makes_a_range_only_before_a_full_version() {
        assert_eq!(
            Constraint::parse("1.2.0-1.5.0").unwrap(),
            Constraint::Range(v("1.2.0"), v("1.5.0"))
        );
        let rc = Constraint::parse("1.0.0-rc.1").unwrap();
        assert!(matches!(rc, Constraint::Req(_)));
        assert!(rc.matches(&v("1.0.0-rc.1"), false, false));
        assert!(!rc.matches(&v("1.0.0"), false, false));
        assert!(Constraint::parse("1.5.0-1.2.0").is_err(), "empty range");
    }

    #[test]
    fn prereleases_only_when_named_or_allowed() {
        assert_eq!(
            pick("^1.2.0", &["1.2.0", "1.3.0-rc.1"], false).as_deref(),
            Some("1.2.0")
        );
        assert_eq!(
            pick("^1.2.0", &["1.2.0", "1.3.0-rc.1"], true).as_deref(),
            Some("1.3.0-rc.1")
        );
        assert_eq!(
            pick("latest", &["1.0.0", "1.1.0-rc.1"], true).as_deref(),
            Some("1.1.0-rc.1")
        );
        assert_eq!(
            pick(
                ">=1.0.0-rc.1",
                &["1.0.0-rc.1", "1.0.0-rc.2", "1.1.0-rc.1"],
                false
            )
            .as_deref(),
            Some("1.0.0-rc.2")
        );
        assert_eq!(pick("latest", &["1.0.0-rc.1"], false), None);
        // A backend-flagged pre-release is one whatever its number.
        let vs = [(v("1.0.0"), false), (v("1.1.0"), true)];
        let c = Constraint::parse("^1").unwrap();
        assert_eq!(
            c.resolve(&vs, |(x, f)| (x, *f), false).unwrap().0,
            v("1.0.0")
        );
        assert_eq!(
            c.resolve(&vs, |(x, f)| (x, *f), true).unwrap().0,
            v("1.1.0")
        );
    }

    #[test]
    fn malformed_constraints_say_why() {
        for bad in [
            "1.2.x.y",
            ">=abc",
            "^",
            "1.0.0 - banana",
            "=>1.0",
            &"9".repeat(200),
        ] {
            let e = Constraint::parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid version constraint"),
                "{bad}: {e}"
            );
        }
    }

    fn arb_version() -> impl Strategy<Value = Version> {
        (0u64..4, 0u64..4, 0u64..4, prop::option::of(0u64..3)).prop_map(|(a, b, c, pre)| {
            let mut v = Version::new(a, b, c);
            if let Some(p) = pre {
                v.pre = semver::Prerelease::new(&format!("rc.{p}")).unwrap();
            }
            v
        })
    }

    fn arb_stable() -> impl Strategy<Value = Version> {
        (0u64..4, 0u64..4, 0u64..4).prop_map(|(a, b, c)| Version::new(a, b, c))
    }

    fn arb_req() -> impl Strategy<Value = String> {
        let op = prop::sample::select(vec!["", "=", "^", "~", ">=", ">", "<=", "<"]);
        (
            op,
            0u64..4,
            0u64..4,
            0u64..4,
            prop::option::of((prop::sample::select(vec![">=", "<", "<="]), 0u64..5)),
        )
            .prop_map(|(op, a, b, c, second)| {
                let first = format!("{op}{a}.{b}.{c}");
                match second {
                    Some((op2, m)) => format!("{first}, {op2}{m}.0.0"),
                    None => first,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Without --pre, the chosen version satisfies semver's own
        /// `VersionReq::matches` (with a bare version read as `=`), and no
        /// higher listed version does.
        #[test]
        fn resolution_agrees_with_semver(req in arb_req(), vs in prop::collection::vec(arb_version(), 0..12)) {
            let c = Constraint::parse(&req).unwrap();
            // semver reads a bare comparator as `^`; ours is `=`.
            let as_exact: Vec<String> = req
                .split(", ")
                .map(|p| if p.starts_with(|ch: char| ch.is_ascii_digit()) { format!("={p}") } else { p.to_string() })
                .collect();
            let oracle = VersionReq::parse(&as_exact.join(", ")).unwrap();
            let got = c.resolve(&vs, |x| (x, false), false);
            let best = vs.iter().filter(|x| oracle.matches(x)).max();
            prop_assert_eq!(got, best);
        }

        /// With --pre, every chosen version still satisfies the constraint's
        /// numeric bounds, and nothing higher in the list does.
        #[test]
        fn resolution_with_pre_is_the_highest_match(req in arb_req(), vs in prop::collection::vec(arb_version(), 0..12)) {
            let c = Constraint::parse(&req).unwrap();
            let got = c.resolve(&vs, |x| (x, false), true);
            if let Some(g) = got {
                prop_assert!(c.matches(g, false, true));
                prop_assert!(vs.iter().filter(|x| c.matches(x, false, true)).all(|x| x <= g));
            } else {
                prop_assert!(vs.iter().all(|x| !c.matches(x, false, true)));
            }
        }

        /// Ranges agree with the two comparators they stand for.
        #[test]
        fn ranges_are_inclusive_bounds(a in arb_stable(), b in arb_stable(), x in arb_stable()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let c = Constraint::parse(&format!("{lo} - {hi}")).unwrap();
            let c2 = Constraint::parse(&format!("{lo}-{hi}")).unwrap();
            prop_assert_eq!(c.matches(&x, false, false), lo <= x && x <= hi);
            prop_assert_eq!(&c, &c2);
        }
    }
}
