"""Plain blocks: cut after line breaks, given out only while the text has no quote, lone CR or empty
line, and handed on byte for byte to the streaming reader after that."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netad.serving.plain_blocks import BlockSplitter, lines, parse, with_fields


def split(data: bytes, block_size: int, **kw) -> tuple[list, BlockSplitter]:
    splitter = BlockSplitter(io.BytesIO(data), block_size, **kw)
    blocks = []
    while (block := splitter.next_block()) is not None:
        blocks.append(block)
    return blocks, splitter


def records(n: int, crlf: bool = False) -> bytes:
    end = "\r\n" if crlf else "\n"
    return "".join(f"{i},{i * 0.5},r{i}{end}" for i in range(n)).encode()


@pytest.mark.parametrize("crlf", [False, True])
def test_blocks_hold_whole_lines_numbered_in_file_order(crlf):
    data = records(200, crlf)
    blocks, splitter = split(data, 100)
    assert splitter.done and len(blocks) > 10
    assert b"".join(b.data for b in blocks) == data  # nothing lost, nothing repeated
    assert all(b.data.endswith(b"\r\n" if crlf else b"\n") and b.crlf is crlf for b in blocks)
    assert [b.first_row for b in blocks] == list(np.cumsum([0] + [b.n_rows for b in blocks[:-1]]) + 1)
    assert sum(b.n_rows for b in blocks) == 200
    block = blocks[3]
    text = block.data.decode().splitlines()
    assert lines(block, 0, block.n_rows).to_pylist() == text
    assert lines(block, 1, 3).to_pylist() == text[1:3]  # a slice of a block: no line break, no CR


def test_the_last_line_may_lack_its_line_break():
    blocks, splitter = split(b"1,2\n3,4", 1000)
    assert splitter.done and [b.data for b in blocks] == [b"1,2\n3,4\n"] and blocks[0].n_rows == 2
    blocks, _ = split(b"1,2\r\n3,4", 1000)
    assert blocks[0].data == b"1,2\r\n3,4\r\n" and lines(blocks[0], 0, 2).to_pylist() == ["1,2", "3,4"]


@pytest.mark.parametrize("odd", [b'5,"x",y\n', b"\n", b"\r\n", b"5,x\ry\n", b"5,x,y\r\n"])
def test_the_plain_blocks_stop_where_the_text_is_not_plain_and_the_rest_follows_unchanged(odd):
    """A quote, an empty line, a lone CR or another kind of line break: the block that holds it is
    not given out, and :meth:`rest` reads from that block's first byte to the end of the file."""
    data = records(100) + odd + records(100)
    blocks, splitter = split(data, 64)
    assert not splitter.done and blocks
    given = b"".join(b.data for b in blocks)
    assert data.startswith(given) and len(given) < len(records(100)) + len(odd)
    assert splitter.next_block() is None  # stopped for good
    assert splitter.rows == sum(b.n_rows for b in blocks) == given.count(b"\n")
    rest = splitter.rest()
    assert rest.read(7) + rest.read() == data[len(given):]


def test_a_record_longer_than_a_block_ends_the_plain_blocks():
    data = records(10) + b"9," + b"x" * 500 + b"\n" + records(3)
    blocks, splitter = split(data, 100)
    assert not splitter.done and splitter.rest().read() == data[sum(len(b.data) for b in blocks):]


def test_a_bom_is_skipped_only_where_asked():
    assert split(b"\xef\xbb\xbf1,2\n", 100, skip_bom=True)[0][0].data == b"1,2\n"
    assert split(b"\xef\xbb\xbf1,2\n", 100)[0][0].data == b"\xef\xbb\xbf1,2\n"
    blocks, splitter = split(b"\xef\xbb\xbf" + records(100), 64, skip_bom=True)  # a file longer than a block
    assert splitter.done and b"".join(b.data for b in blocks) == records(100)


def test_the_rest_is_read_in_full_reads():
    """The streaming reader gets as many bytes as it asks for until the end of the file."""
    data = records(50) + b'"q",1,2\n' + records(50)
    _, splitter = split(data, 64)
    rest, first = splitter.rest(), len(splitter.pending)
    assert len(rest.read(first + 10)) == first + 10


def test_fields_are_joined_onto_the_lines():
    block = split(b"a,b\nc,d\n", 100)[0][0]
    out = with_fields(lines(block, 0, 2), [pa.array(["1", "2"]), pa.array(["x", "y"])])
    assert out.to_pybytes() == b"a,b,1,x\nc,d,2,y\n"
    assert with_fields(lines(block, 1, 2), [pa.array(["9"])]).to_pybytes() == b"c,d,9\n"


NUMBERS = ["1.5", " 1.5", "1.5 ", "+1.5", "-0", ".5", "5.", "1e308", "1e309", "4.9e-324", "1e-400", "nan", "NaN",
           "inf", "-inf", "Infinity", "0.1234567890123456789", "1.000000000000000000001", "123456789012345678901",
           "0x10", "1_0", "1e", "1.5.2", "--1", "٣", ""]


def test_a_number_the_typed_parse_reads_is_the_number_pandas_reads():
    """The typed parse of a plain block and the pandas route of the rest of the toolkit read a number
    alike wherever the typed parse takes it (where it does not, the block goes the streaming route)."""
    for text in NUMBERS:
        block = split(f"{text},k\n".encode(), 100)[0][0]
        table = parse(block, ["n", "c"], {"n": pa.float64(), "c": pa.dictionary(pa.int32(), pa.string())})
        expected = pd.to_numeric(pd.Series([text], dtype=object), errors="coerce")[0]
        if table is None:
            assert np.isnan(expected) and text.strip().lower() not in ("nan",), text
            continue
        value = table.column("n").to_numpy()[0]
        assert (np.isnan(value) and np.isnan(expected)) or value == expected, text
        assert table.column("c").to_pylist() == ["k"]


def test_a_record_of_another_width_is_not_parsed():
    block = split(b"1,a\n2\n", 100)[0][0]
    assert parse(block, ["n", "c"], {"n": pa.float64()}) is None
    block = split(b"1,a\n2,b,c\n", 100)[0][0]
    assert parse(block, ["n", "c"], {"n": pa.float64()}) is None
