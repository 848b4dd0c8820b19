"""Incremental reads by modification time (files and s3 sources): which files are new since a
bookmark, when clocks have coarse ticks (S3's times are whole seconds)."""

from __future__ import annotations

from etl_core.manifests import modified_since


def test_the_first_read_takes_every_file_and_remembers_the_newest_tick():
    new, bookmark = modified_since({"a": 10.0, "b": 12.0, "c": 12.0}, None)
    assert new == ["a", "b", "c"]
    assert bookmark == {"mtime": 12.0, "names": ["b", "c"]}


def test_a_file_written_in_the_same_tick_but_listed_later_is_read_once():
    _, bookmark = modified_since({"a": 10.0, "b": 12.0}, None)
    # "c" got the same second as "b" but arrived after the first listing
    new, bookmark = modified_since({"a": 10.0, "b": 12.0, "c": 12.0}, bookmark)
    assert new == ["c"]
    assert bookmark == {"mtime": 12.0, "names": ["b", "c"]}
    assert modified_since({"a": 10.0, "b": 12.0, "c": 12.0}, bookmark) == ([], None)
    new, bookmark = modified_since({"a": 10.0, "b": 12.0, "c": 12.0, "d": 13.0}, bookmark)
    assert (new, bookmark) == (["d"], {"mtime": 13.0, "names": ["d"]})


def test_a_bare_number_from_before_is_a_time_and_only_later_files_are_new():
    new, bookmark = modified_since({"a": 10.0, "b": 12.0, "c": 13.5}, 12.0)
    assert new == ["c"]
    assert bookmark == {"mtime": 13.5, "names": ["c"]}
    assert modified_since({"a": 10.0}, "12.0") == ([], None)  # the file store kept a string
