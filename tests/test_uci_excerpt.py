"""The excerpts of the raw UCI files in tests/data are what tests/data/README.md says:
unchanged slices of the originals, with every quirk of the layout, holding the same
people as the corresponding rows of data/Input_Dataset.csv (which is adult.data
followed by adult.test, with `,` for `, ` and a header)."""

from __future__ import annotations

import pytest

from tests.conftest import INPUT, UCI_DIR, UCI_FIRST_ROW

PREAMBLE = "|1x3 Cross validator"


def _lines(name: str) -> list[str]:
    data = (UCI_DIR / name).read_bytes()
    assert b"\r" not in data, "LF line endings, as the originals"
    return data.decode("ascii").split("\n")


@pytest.mark.parametrize("name", ["adult.data", "adult.test"])
def test_excerpt_is_a_slice_of_the_input(name: str) -> None:
    lines = _lines(name)
    # Like the originals: the test part's preamble line, and an empty line at the end.
    assert (lines[0] == PREAMBLE) == (name == "adult.test")
    assert lines[-2:] == ["", ""]  # "...\n\n": an empty last line
    records = [line for line in lines if line and line != PREAMBLE]
    assert len(records) >= 500
    assert all(line.count(", ") == 14 and line.count(",") == 14 for line in records)
    start = UCI_FIRST_ROW[name] + 1  # after the input's header
    expected = INPUT.read_text(encoding="utf-8").splitlines()[start : start + len(records)]
    assert [line.replace(", ", ",") for line in records] == expected


def test_excerpts_keep_every_quirk() -> None:
    fields = {
        name: [line.split(", ") for line in _lines(name) if line and line != PREAMBLE]
        for name in ("adult.data", "adult.test")
    }
    assert {r[14] for r in fields["adult.data"]} == {"<=50K", ">50K"}
    assert {r[14] for r in fields["adult.test"]} == {"<=50K.", ">50K."}
    for name, records in fields.items():
        for column, position in (("workclass", 1), ("occupation", 6), ("native_country", 13)):
            assert any(r[position] == "?" for r in records), (name, column)
