"""Where records come from: a file, a folder or a glob of CSV and Parquet files, read as one frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_frame
from netad.data.loading import read_frame
from netad.data.sources import data_digest, data_files, file_digest, is_parquet, source_name, with_text_columns
from netad.errors import UserError


def _parquet(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def test_a_file_a_folder_and_a_glob_name_their_files_in_name_order(tmp_path):
    (tmp_path / "flows").mkdir()
    for name in ("b.parquet", "a.csv", "_SUCCESS", ".a.csv.crc"):
        (tmp_path / "flows" / name).write_text("x\n")
    (tmp_path / "flows" / "sub").mkdir()
    (tmp_path / "flows" / "sub" / "c.parquet").write_text("x\n")
    assert data_files(tmp_path / "flows" / "a.csv") == [tmp_path / "flows" / "a.csv"]
    assert [p.name for p in data_files(tmp_path / "flows")] == ["a.csv", "b.parquet"]  # no marker files, no folders
    assert [p.name for p in data_files(f"{tmp_path}/flows/*.parquet")] == ["b.parquet"]
    assert [p.name for p in data_files(f"{tmp_path}/flows/**/*.parquet")] == ["b.parquet", "c.parquet"]


@pytest.mark.parametrize("spec, message", [
    ("nothing.csv", "data file not found: {tmp}/nothing.csv"),
    ("*.parquet", "data pattern {tmp}/*.parquet matches no files"),
    ("empty", "data folder {tmp}/empty holds no files"),
])
def test_what_names_no_file_is_one_line(tmp_path, spec, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as err:
        data_files(f"{tmp_path}/{spec}")
    assert str(err.value) == message.format(tmp=tmp_path)


def test_the_digest_of_one_file_is_its_own_and_of_a_folder_changes_with_any_file(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv").write_text("x,label\n1,0\n")
    (folder / "b.csv").write_text("x,label\n2,1\n")
    assert data_digest(folder / "a.csv") == file_digest(folder / "a.csv")
    before = data_digest(folder)
    assert data_digest(f"{folder}/*.csv") == before  # the same files, however they are named
    (folder / "b.csv").write_text("x,label\n3,1\n")
    changed = data_digest(folder)
    (folder / "b.csv").rename(folder / "c.csv")
    renamed = data_digest(folder)
    (folder / "d.csv").write_text("x,label\n4,0\n")
    assert len({before, changed, renamed, data_digest(folder)}) == 4


def test_parquet_is_known_by_its_bytes_and_reads_as_the_csv_does(tmp_path):
    frame = make_frame(n=120, seed=3)
    frame.to_csv(tmp_path / "t.csv", index=False)
    _parquet(frame, tmp_path / "t.data")  # not named .parquet
    assert is_parquet(tmp_path / "t.data") and not is_parquet(tmp_path / "t.csv")
    from_csv, from_parquet = read_frame(tmp_path / "t.csv"), read_frame(tmp_path / "t.data")
    pd.testing.assert_frame_equal(from_parquet, from_csv)


def test_a_folder_of_parquet_and_csv_parts_reads_as_the_whole(tmp_path):
    frame = make_frame(n=300, seed=4)
    (tmp_path / "parts").mkdir()
    _parquet(frame.iloc[:100], tmp_path / "parts" / "p0.parquet")
    _parquet(frame.iloc[100:200][frame.columns[::-1]], tmp_path / "parts" / "p1.parquet")  # columns in another order
    frame.iloc[200:].to_csv(tmp_path / "parts" / "p2.csv", index=False)
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    pd.testing.assert_frame_equal(read_frame(tmp_path / "parts"), frame.reset_index(drop=True))
    assert len(read_frame(f"{tmp_path}/parts/*.parquet")) == 200


def test_a_part_with_other_columns_is_named_with_its_columns(tmp_path):
    frame = make_frame(n=60, seed=5)
    (tmp_path / "parts").mkdir()
    _parquet(frame, tmp_path / "parts" / "a.parquet")
    _parquet(frame.drop(columns=["bytes"]).assign(extra=1), tmp_path / "parts" / "b.parquet")
    with pytest.raises(UserError) as err:
        read_frame(tmp_path / "parts")
    assert str(err.value) == (f"{tmp_path}/parts/b.parquet: its columns differ from those of "
                              f"{tmp_path}/parts/a.parquet: it lacks bytes and has extra besides")


def test_parquet_category_columns_read_as_text_as_a_model_learned_them(tmp_path):
    table = pa.table({"port": pa.array([80, 443, None], pa.int64()),
                      "proto": pa.array(["tcp", "udp", "tcp"]).dictionary_encode(),
                      "flag": pa.array([True, False, None]), "x": [1.5, 2.0, 3.0]})
    pq.write_table(table, tmp_path / "t.parquet")
    frame = read_frame(tmp_path / "t.parquet", text_columns=["port"])
    assert frame["port"].tolist()[:2] == ["80", "443"] and pd.isna(frame["port"].iloc[2])
    assert frame["proto"].tolist() == ["tcp", "udp", "tcp"] and not isinstance(frame["proto"].dtype, pd.CategoricalDtype)
    view = with_text_columns(table, ["flag", "x"], ["flag"])
    assert view.column("flag").to_pylist() == ["true", "false", None] and view.column("x").type == pa.float64()


def test_column_names_for_headerless_csv_must_be_a_parquet_files_columns(tmp_path):
    _parquet(pd.DataFrame({"a": [1, 2], "label": [0, 1]}), tmp_path / "t.parquet")
    assert list(read_frame(tmp_path / "t.parquet", column_names=["label", "a"]).columns) == ["a", "label"]
    with pytest.raises(UserError, match="t.parquet: its columns differ from those of data.column_names: it lacks b"):
        read_frame(tmp_path / "t.parquet", column_names=["a", "b", "label"])


def test_source_names_for_report_folders(tmp_path):
    (tmp_path / "flows").mkdir()
    assert source_name(tmp_path / "flows") == "flows"
    assert source_name("data/today.csv.gz") == "today.csv"
    assert source_name("flows/2026-*/*.parquet") == "flows"
    assert source_name("*.csv") == "data"
