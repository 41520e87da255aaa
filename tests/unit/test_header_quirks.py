"""Real NIDS files' header quirks: a UTF-8 byte-order mark, names with surrounding spaces (CIC-IDS2017's
' Label'), and Infinity / inf / NaN strings in number columns."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_frame
from netad.config import load_config
from netad.data.loading import load_table
from netad.errors import UserError


def _load(path, *sets):
    return load_table(load_config(None, [f"data.data_path={path}", *sets]).data)


def test_a_byte_order_mark_does_not_touch_the_first_column_name(tmp_path):
    frame = make_frame(seed=1)
    frame.to_csv(tmp_path / "bom.csv", index=False, encoding="utf-8-sig")
    assert (tmp_path / "bom.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    table = _load(tmp_path / "bom.csv")
    assert list(table.features.columns) == [c for c in frame.columns if c != "label"]


def test_names_with_surrounding_spaces_get_a_line_that_says_what_to_set(tmp_path):
    frame = make_frame(seed=2)
    frame.columns = [" " + c for c in frame.columns]
    frame = frame.rename(columns={" label": " Label"})
    frame.to_csv(tmp_path / "cic.csv", index=False)
    with pytest.raises(UserError, match=r"label column 'label' not found .*the file has ' Label': set "
                                        r"data.label_column to it"):
        _load(tmp_path / "cic.csv")
    with pytest.raises(UserError, match=r"drop_columns names columns not in .*: bytes; the file has ' bytes'"):
        _load(tmp_path / "cic.csv", "data.label_column=' Label'", "data.drop_columns=[bytes]")
    table = _load(tmp_path / "cic.csv", "data.label_column=' Label'", "data.drop_columns=[' bytes']")
    assert " bytes" not in table.features.columns and len(table) == len(frame)


@pytest.mark.parametrize("text", ["Infinity", "inf", "-inf", "NaN"])
def test_infinity_and_nan_strings_in_number_columns(tmp_path, text):
    frame = make_frame(seed=3).astype({"bytes": object})
    frame.loc[[5, 8], "bytes"] = text
    frame.to_csv(tmp_path / "inf.csv", index=False)
    with pytest.raises(UserError, match=r"NaN or infinite values in 'bytes' \(2 rows\); set data.nan_policy"):
        _load(tmp_path / "inf.csv")
    kept = _load(tmp_path / "inf.csv", "data.nan_policy=median")  # read as a number column with two gaps
    assert kept.features["bytes"].dtype == np.float64 and kept.features["bytes"].isna().sum() == 2
    assert len(_load(tmp_path / "inf.csv", "data.nan_policy=drop")) == len(frame) - 2
