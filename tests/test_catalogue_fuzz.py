"""Bounded fuzzing of the label reader: mutated real labels give a record or a LabelError, nothing else.

Hypothesis mutates the real RED label (ESP_013951_1955_RED.LBL) by deleting, duplicating and
replacing lines, splicing random text in, and changing single characters. Bounded by max_examples
and a per-example deadline, so it ends in seconds and a hang fails the test.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marsice_plugin.errors import LabelError
from marsice_plugin.labels import ProductLabel, parse_label_text

from .conftest import DATA

REAL = (DATA / "ESP_013951_1955_RED.LBL").read_text(encoding="latin-1")
LINES = REAL.splitlines()
TOKENS = st.sampled_from(
    ["=", "(", ")", "{", "}", '"', "'", "<KM>", "END_OBJECT", "OBJECT = IMAGE", "END", "/*", "*/", "16#FF#",
     "2#1010#", "-1e309", "nan", "inf", "0", "-9998", "\x00", "\t", "\n", "MAP_SCALE = 0", "LINES = -5",
     "SAMPLE_BITS = 1e9", "GROUP = X", "END_GROUP", "^IMAGE = (\"X\", 3 <BYTES>)", "CENTER_LATITUDE = 1.0E+400"]
)  # fmt: skip

line_edit = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, len(LINES) - 1), st.just("")),
    st.tuples(st.just("duplicate"), st.integers(0, len(LINES) - 1), st.just("")),
    st.tuples(st.just("replace"), st.integers(0, len(LINES) - 1), st.text(max_size=40) | TOKENS),
    st.tuples(st.just("insert"), st.integers(0, len(LINES) - 1), st.text(max_size=40) | TOKENS),
    st.tuples(st.just("char"), st.integers(0, len(REAL) - 1), st.characters()),
    st.tuples(st.just("truncate"), st.integers(0, len(REAL) - 1), st.just("")),
)


def mutate(edits: list[tuple[str, int, str]]) -> str:
    lines = list(LINES)
    text = None
    for kind, where, value in edits:
        if kind in ("char", "truncate"):
            text = text if text is not None else "\n".join(lines)
            where = min(where, max(len(text) - 1, 0))
            text = text[:where] + value + text[where + 1 :] if kind == "char" else text[:where]
            lines = text.splitlines()
            continue
        text = None
        where = min(where, max(len(lines) - 1, 0))
        if kind == "delete" and lines:
            del lines[where]
        elif kind == "duplicate" and lines:
            lines.insert(where, lines[where])
        elif kind == "replace" and lines:
            lines[where] = value
        elif kind == "insert":
            lines.insert(where, value)
    return "\n".join(lines) + "\n"


@settings(max_examples=250, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_edit, min_size=1, max_size=6))
def test_mutated_labels_give_a_record_or_a_label_error(edits):
    text = mutate(edits)
    try:
        record = parse_label_text(text)
    except LabelError:
        return
    assert isinstance(record, ProductLabel)
    assert record.lines > 0 and record.samples > 0 and record.projection.map_scale_m > 0


def test_unmutated_label_parses():
    assert parse_label_text(mutate([])).product_id == "ESP_013951_1955_RED"


def test_stray_equals_sign_is_a_label_error_not_a_hang():
    """Found by the fuzzer: pvl 1.3.2's OmniParser looped forever on these (labels.py guards it)."""
    for edits in ([("replace", 123, "=")], [("insert", 59, "= 3")], [("replace", 30, "A = 1 = 2")]):
        try:
            parse_label_text(mutate(edits))
        except LabelError as exc:
            assert "not a readable PDS3 label" in str(exc)
        else:
            raise AssertionError(f"{edits} parsed")
