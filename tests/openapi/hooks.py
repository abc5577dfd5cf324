"""Schemathesis hooks for extregd's OpenAPI document.

The `constraint` query parameter of `.../resolve` has the string format
`x-version-constraint` (see README, "Version constraints"). JSON Schema
cannot spell that grammar, so this teaches the fuzzer to write valid
constraints, as it knows `date-time`: schema-valid requests then really
are valid, and `positive_data_acceptance` holds the daemon to accepting
them. Invalid strings are still sent by the negative phases.
"""

import schemathesis
from hypothesis import strategies as st

num = st.integers(min_value=0, max_value=40).map(str)
ident = st.one_of(
    st.integers(min_value=0, max_value=99).map(str),
    st.from_regex(r"\A[a-z][a-z0-9-]{0,6}\Z"),
)
pre = st.lists(ident, min_size=1, max_size=3).map(lambda xs: "-" + ".".join(xs))
vee = st.sampled_from(["", "v"])


@st.composite
def full_version(draw):
    v = f"{draw(num)}.{draw(num)}.{draw(num)}"
    if draw(st.booleans()):
        v += draw(pre)
    return v


@st.composite
def partial_version(draw):
    parts = [draw(num) for _ in range(draw(st.integers(min_value=1, max_value=3)))]
    return ".".join(parts)


@st.composite
def range_constraint(draw):
    a, b = draw(full_version()), draw(full_version())
    lo, hi = sorted([a, b], key=_key)
    sep = draw(st.sampled_from([" - ", "-"]))
    if sep == "-" and "-" in lo:
        sep = " - "
    return f"{lo}{sep}{hi}"


def _key(v):
    # semver precedence, enough for ordering two ends of a range
    core, _, p = v.partition("-")
    nums = tuple(int(x) for x in core.split("."))
    if not p:
        return (nums, 1, ())
    ids = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in p.split("."))
    return (nums, 0, ids)


@st.composite
def comparator(draw):
    op = draw(st.sampled_from(["", "=", ">", ">=", "<", "<=", "~", "^"]))
    return f"{op}{draw(vee)}{draw(st.one_of(full_version(), partial_version()))}"


constraints = st.one_of(
    st.sampled_from(["", "*", "latest", "LATEST"]),
    st.builds(lambda v, x: v + x, vee, full_version()),
    partial_version(),
    comparator(),
    st.lists(comparator(), min_size=2, max_size=3).map(", ".join),
    range_constraint(),
).filter(lambda s: len(s) <= 128)

schemathesis.openapi.format("x-version-constraint", constraints)
