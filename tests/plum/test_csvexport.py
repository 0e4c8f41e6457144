import csv
import io
from decimal import Decimal

import pytest

from plum.csvexport import csv_lines, csv_response, csv_safe


@pytest.mark.parametrize(
    "cell, shown",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("plain", "plain"),
        (None, ""),
    ],
)
def test_a_text_cell_that_would_run_as_a_formula_is_shown_as_text(cell, shown):
    assert csv_safe(cell) == shown


def test_numbers_stay_numbers_so_negative_amounts_still_add_up():
    assert csv_safe(-5) == -5
    assert csv_safe(Decimal("-1.50")) == Decimal("-1.50")
    assert csv_safe(True) == "true"


def test_lines_parse_back_to_the_safe_cells():
    text = "".join(csv_lines(["a", "b"], [["=1+1", 2], ['quote "x"', "line\nbreak"]]))
    assert list(csv.reader(io.StringIO(text))) == [
        ["a", "b"],
        ["'=1+1", "2"],
        ['quote "x"', "line\nbreak"],
    ]


def test_the_response_streams_a_generator_without_consuming_it_first():
    consumed = []

    def rows():
        for i in range(3):
            consumed.append(i)
            yield [i]

    response = csv_response("x.csv", ["n"], rows())
    assert consumed == []
    assert response["Content-Disposition"] == 'attachment; filename="x.csv"'
    assert b"".join(response.streaming_content) == b"n\r\n0\r\n1\r\n2\r\n"
