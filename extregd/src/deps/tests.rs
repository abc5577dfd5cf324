use super::*;
use proptest::prelude::*;

const T: ExtensionType = ExtensionType::Taskserv;

#[derive(Default, Clone, Debug)]
struct U {
    vs: BTreeMap<Key, Vec<(Version, Vec<Requirement>)>>,
}

impl Universe for U {
    fn versions(&self, key: &Key) -> Option<Vec<Candidate>> {
        Some(
            self.vs
                .get(key)
                .map(|v| {
                    v.iter()
                        .map(|(v, _)| Candidate {
                            version: v.clone(),
                            prerelease: !v.pre.is_empty(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
    fn deps(&self, key: &Key, v: &Version) -> Option<Vec<Requirement>> {
        self.vs
            .get(key)?
            .iter()
            .find(|(x, _)| x == v)
            .map(|(_, d)| d.clone())
    }
}

fn key(n: &str) -> Key {
    (T, n.to_string())
}

fn req(n: &str, c: &str) -> Requirement {
    let spec = DepSpec::parse(&format!(
        "taskserv/{n}@{}",
        if c.is_empty() { "*" } else { c }
    ))
    .unwrap();
    Requirement {
        target: key(n),
        constraint: spec.constraint,
        text: spec.text,
        allow_pre: false,
    }
}

fn add(u: &mut U, n: &str, v: &str, deps: &[(&str, &str)]) {
    u.vs.entry(key(n)).or_default().push((
        v.parse().unwrap(),
        deps.iter().map(|(d, c)| req(d, c)).collect(),
    ));
}

fn done(u: &U, root: Requirement) -> Solution {
    match solve(u, &root).unwrap() {
        Step::Done(s) => s,
        Step::Need(n) => panic!("needs {n:?}"),
    }
}

#[test]
fn spec_syntax() {
    let d = DepSpec::parse("taskserv/containerd@^1.7").unwrap();
    assert_eq!(d.ext_type, Some(T));
    assert_eq!(d.name, "containerd");
    assert!(d
        .constraint
        .matches(&"1.7.3".parse().unwrap(), false, false));
    let d = DepSpec::parse("containerd").unwrap();
    assert_eq!((d.ext_type, d.constraint), (None, Constraint::Latest));
    let d = DepSpec::parse("etcd@>=3.4, <4").unwrap();
    assert!(d
        .constraint
        .matches(&"3.5.0".parse().unwrap(), false, false));
    for bad in ["widget/x", "../x", "x@", "x@^^1", ""] {
        assert!(DepSpec::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn newest_consistent_versions_in_dependency_order() {
    let mut u = U::default();
    add(&mut u, "app", "1.0.0", &[("web", "^1"), ("db", "")]);
    add(&mut u, "app", "2.0.0", &[("web", "^2"), ("db", "~1.4")]);
    add(&mut u, "web", "1.5.0", &[("db", "^1")]);
    add(&mut u, "web", "2.1.0", &[("db", ">=1.4")]);
    add(&mut u, "db", "1.4.2", &[]);
    add(&mut u, "db", "1.5.0", &[]);
    let s = done(&u, req("app", ""));
    assert_eq!(s.picks[&key("app")].to_string(), "2.0.0");
    assert_eq!(s.picks[&key("web")].to_string(), "2.1.0");
    assert_eq!(s.picks[&key("db")].to_string(), "1.4.2", "~1.4 from app");
    assert_eq!(s.order, vec![key("db"), key("web"), key("app")]);
}

#[test]
fn backtracks_to_an_older_version() {
    let mut u = U::default();
    add(&mut u, "app", "1.0.0", &[("lib", "^1")]);
    add(&mut u, "app", "2.0.0", &[("lib", "^3")]);
    add(&mut u, "lib", "1.2.0", &[]);
    let s = done(&u, req("app", ""));
    assert_eq!(s.picks[&key("app")].to_string(), "1.0.0");
}

#[test]
fn conflicts_name_the_chain() {
    let mut u = U::default();
    add(&mut u, "app", "1.0.0", &[("web", "^1"), ("db", "^2")]);
    add(&mut u, "web", "1.0.0", &[("db", "^1")]);
    add(&mut u, "db", "1.0.0", &[]);
    add(&mut u, "db", "2.0.0", &[]);
    let e = solve(&u, &req("app", "")).unwrap_err().to_string();
    assert!(
        e.contains("taskserv/app 1.0.0 -> taskserv/web 1.0.0"),
        "{e}"
    );
    assert!(e.contains("taskserv/db@^1"), "{e}");
    assert!(
        e.contains("'taskserv/db@^2' required by taskserv/app 1.0.0"),
        "{e}"
    );
    assert!(e.contains("available: 2.0.0, 1.0.0"), "{e}");
    let mut u = U::default();
    add(&mut u, "app", "1.0.0", &[("ghost", "")]);
    let e = solve(&u, &req("app", "")).unwrap_err().to_string();
    assert!(
        e.contains("taskserv/ghost is not held by any backend"),
        "{e}"
    );
    assert!(e.contains("required by taskserv/app 1.0.0"), "{e}");
}

#[test]
fn cycles_are_named() {
    let mut u = U::default();
    add(&mut u, "a", "1.0.0", &[("b", "")]);
    add(&mut u, "b", "1.0.0", &[("c", "")]);
    add(&mut u, "c", "1.0.0", &[("a", "^1")]);
    let e = solve(&u, &req("a", "")).unwrap_err();
    assert_eq!(
            e.to_string(),
            "dependency cycle: taskserv/a 1.0.0 -> taskserv/b 1.0.0 -> taskserv/c 1.0.0 -> taskserv/a 1.0.0"
        );
}

#[test]
fn unknowns_are_asked_for() {
    struct Empty;
    impl Universe for Empty {
        fn versions(&self, _: &Key) -> Option<Vec<Candidate>> {
            None
        }
        fn deps(&self, _: &Key, _: &Version) -> Option<Vec<Requirement>> {
            None
        }
    }
    assert_eq!(
        solve(&Empty, &req("a", "")).unwrap(),
        Step::Need(Need::Versions(key("a")))
    );
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "2.0.0"];
const CONSTRAINTS: [&str; 5] = ["*", "^1", "^2", "~1.1", "=1.0.0"];

fn arb_universe() -> impl Strategy<Value = U> {
    // For each (name, version): present? and up to 2 deps.
    let dep = (0usize..4, 0usize..5);
    let ver = (any::<bool>(), prop::collection::vec(dep, 0..3));
    prop::collection::vec(ver, 12).prop_map(|cells| {
        let mut u = U::default();
        for (i, (present, deps)) in cells.into_iter().enumerate() {
            let (n, v) = (NAMES[i / 3], VERSIONS[i % 3]);
            if present {
                let ds: Vec<(&str, &str)> = deps
                    .into_iter()
                    .map(|(d, c)| (NAMES[d], CONSTRAINTS[c]))
                    .collect();
                add(&mut u, n, v, &ds);
            }
        }
        u
    })
}

/// Every closed assignment (each chosen version's requirements met by
/// chosen versions), by brute force over 4 names x (none | 3 versions).
fn brute(u: &U, root: &Requirement) -> Vec<BTreeMap<Key, Version>> {
    let mut out = Vec::new();
    for code in 0..4usize.pow(4) {
        let mut pick = BTreeMap::new();
        let mut ok = true;
        for (i, n) in NAMES.iter().enumerate() {
            let c = (code / 4usize.pow(i as u32)) % 4;
            if c > 0 {
                let v: Version = VERSIONS[c - 1].parse().unwrap();
                if u.deps(&key(n), &v).is_none() {
                    ok = false;
                }
                pick.insert(key(n), v);
            }
        }
        if !ok {
            continue;
        }
        let sat = |r: &Requirement| {
            pick.get(&r.target)
                .is_some_and(|v| r.constraint.matches(v, false, false))
        };
        if !sat(root) {
            continue;
        }
        if pick
            .iter()
            .all(|(k, v)| u.deps(k, v).unwrap().iter().all(&sat))
        {
            out.push(pick);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A solution meets every requirement of every chosen version, holds
    /// only what the root reaches, orders dependencies first, and gives
    /// the root the newest version any closed assignment allows; "no
    /// solution" means brute force finds none either.
    #[test]
    fn resolution_is_sound_complete_and_newest(u in arb_universe(), c in 0usize..5) {
        let root = req("a", CONSTRAINTS[c]);
        let all = brute(&u, &root);
        match solve(&u, &root) {
            Ok(Step::Done(s)) => {
                for (k, v) in &s.picks {
                    for r in u.deps(k, v).unwrap() {
                        let p = s.picks.get(&r.target);
                        prop_assert!(p.is_some_and(|p| r.constraint.matches(p, false, false)));
                        let (ik, it) = (
                            s.order.iter().position(|x| x == k).unwrap(),
                            s.order.iter().position(|x| x == &r.target).unwrap(),
                        );
                        prop_assert!(it < ik, "dependency after dependent");
                    }
                }
                prop_assert_eq!(s.order.len(), s.picks.len());
                prop_assert_eq!(s.order.last(), Some(&key("a")));
                let best = all.iter().map(|p| p[&key("a")].clone()).max();
                prop_assert_eq!(Some(s.picks[&key("a")].clone()), best);
            }
            Ok(Step::Need(n)) => prop_assert!(false, "needs {:?}", n),
            Err(ResolveError::Conflict(_)) => prop_assert!(all.is_empty(), "a solution exists: {:?}", all[0]),
            Err(ResolveError::Cycle(m)) => prop_assert!(m.starts_with("dependency cycle: ")),
            Err(ResolveError::TooComplex(_)) => prop_assert!(false, "too complex"),
        }
    }
}
