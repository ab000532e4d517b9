"""The CSV fast path (pyarrow) reads exactly what the csv-module path reads, or hands the file over."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_mtmm.data.csv_fast import read_cells
from keras_mtmm.data.csv_reader import MAX_CELL_BYTES, _read_cells_python
from keras_mtmm.errors import DataError

KINDS = {"x": "numeric", "t": "text", "y": "label"}


def _both(tmp_path, content: bytes, kinds=KINDS):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    return read_cells(path, kinds, MAX_CELL_BYTES), _read_cells_python(path, kinds, "data.path")


def _assert_same(fast, slow, kinds=KINDS):
    assert fast is not None, "the fast path handed over a plain file"
    assert fast[0] == slow[0]
    np.testing.assert_array_equal(np.asarray(fast[1]), np.asarray(slow[1]))
    for name, kind in kinds.items():
        if kind == "numeric":
            expected = np.asarray([cell or "nan" for cell in slow[2][name]], dtype=np.float64).astype(np.float32)
            np.testing.assert_array_equal(fast[2][name], expected)
        else:
            assert fast[2][name] == slow[2][name]


@pytest.mark.parametrize(
    "content",
    [
        b"x,t,y\n1,a,p\n2.5,b b,q\n",
        b"x,t,y\n1,a,p\n2.5,b,q",  # no newline at the end
        b"\xef\xbb\xbfx,t,y\r\n1,a,p\r\n,  b  ,\r\n",  # BOM, CRLF, an empty numeric cell, padded text
        b'x,t,y\n1,"a, with comma",p\n2,"two\nlines",q\n3,"say ""hi""",r\n',  # quoting, a quoted newline
        b"x,t,y\n\n1,a,p\n,,\n   \n2,b,q\n\n",  # blank records count as lines
        b'x,t,y\n1,a,p\n"","",""\n2,b,q\n',  # a record of quoted empty cells is blank
        b"extra,x,t,y\n9,1,a,p\n8,2,b,q\n",  # a column the config does not name
        "x,t,y\n1,caf\u00e9 \u65e5\u672c,p\n2,\u00a0x\u00a0,q\n".encode(),  # UTF-8 text, non-ASCII whitespace
        b"x,t,y\n1e3,a,p\n-0,b,q\nnan,c,r\n+.5,d,s\n",
        b'"x","t","y"\n"1","a","p"\n',
    ],
)
def test_fast_path_reads_what_the_csv_module_reads(tmp_path, content):
    _assert_same(*_both(tmp_path, content))


def test_a_quoted_newline_in_the_header_moves_every_line_number(tmp_path):
    kinds = {"x": "numeric", "t\nwith newline": "text"}
    fast, slow = _both(tmp_path, b'x,"t\nwith newline"\n1,a\n2,b\n', kinds)
    _assert_same(fast, slow, kinds)
    assert list(fast[1]) == [3, 4]


@pytest.mark.parametrize(
    "content",
    [
        b"x,t,y\n1,a,p\n1_000,b,q\n",  # Python reads 1_000, pyarrow does not
        b"x,t,y\n1,a,p\ninf,b,q\n",  # non-finite: the csv path quotes the cell
        b"x,t,y\n1,a,p\n1e39,b,q\n",  # overflows float32
        b'x,t,y\n1,a"b,p\n',  # a quote inside a cell that is not quoted
        b'x,t,y\n1,"a" ,p\n',  # text after a closing quote
        b"x,t,y\r1,a,p\r",  # lone carriage returns end lines for the csv module
        b"x,t,y\n1,a\n",  # a row with a cell missing
        b"x,t,y\n1,a,p,extra\n",
        b"x,t,y\n",  # a header and no rows
        b"\nx,t,y\n1,a,p\n",  # a blank first line (no header)
        b"x,t,y\n1,\xff,p\n",  # not UTF-8
        b"x,t,y\n1,a\x00,p\n",  # a NUL byte
        b'x,t,y\n1,"unclosed,p\n',
    ],
)
def test_fast_path_hands_over_files_it_cannot_read_exactly(tmp_path, content):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    assert read_cells(path, KINDS, MAX_CELL_BYTES) is None


def test_a_header_without_a_configured_column_is_the_same_error_either_way(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"x,t\n1,a\n")
    messages = []
    for read in (lambda: read_cells(path, KINDS, MAX_CELL_BYTES), lambda: _read_cells_python(path, KINDS, "k")):
        with pytest.raises(DataError) as error:
            read()
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert "column 'y'" in messages[0] and "is configured but not in the CSV" in messages[0]


def test_a_record_longer_than_the_cell_limit_is_handed_over(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"x,t,y\n1,a,p\n2," + b"w" * 100 + b",q\n")
    assert read_cells(path, KINDS, 50) is None
    assert read_cells(path, KINDS, 1000) is not None


_CELL = st.one_of(
    st.sampled_from(["", " ", "a", "b c", '"', ",", "\n", "\r\n", "x\u00e9", "1", "-2.5", "  3 ", '""']),
    st.text(alphabet='ab ,"\n1.', max_size=6),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=1, max_size=6), crlf=st.booleans())
def test_fast_path_agrees_with_the_csv_module_on_random_files(tmp_path, rows, crlf):
    """Any file: the fast path reads the same header, lines and cells, or hands it over."""
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n" if crlf else "\n").writerows([["x", "t", "y"], *rows])
    kinds = {"t": "text", "y": "label", "x": "label"}
    path = tmp_path / "d.csv"
    path.write_bytes(buffer.getvalue().encode())
    try:
        slow = _read_cells_python(path, kinds, "k")
    except DataError:  # the csv path refuses it: the fast path must hand it over
        assert read_cells(path, kinds, MAX_CELL_BYTES) is None
        return
    # A file the csv module writes is plain: the fast path must read it itself (it hands over only
    # what csv.writer never writes: unquoted quotes, lone carriage returns, ...).
    _assert_same(read_cells(path, kinds, MAX_CELL_BYTES), slow, kinds)
