"""Tensors on the wire and on disk: exact round trips, refusals before data."""

from __future__ import annotations

import random

import numpy as np
import pytest

from crucible.errors import InputError
from crucible.tensors import (
    Assembler,
    TensorFileWriter,
    check_finite,
    check_manifest,
    describe,
    file_digest,
    iter_bytes,
    payload_digest,
    read_file,
    read_metadata,
    write_atomic,
)


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "0.weight": rng.normal(size=(300, 70)).astype(np.float32),
        "0.bias": rng.normal(size=300).astype(np.float32),
        "steps": np.arange(5, dtype=np.int64),
    }


def test_chunked_bytes_reassemble_to_equal_tensors():
    original = weights()
    assembler = Assembler(describe(original), source="test")
    chunks = list(iter_bytes(original, chunk_bytes=4096))
    assert len(chunks) > 10
    for chunk in chunks:
        assembler.add(chunk)
    result = assembler.finish()
    for name, array in original.items():
        np.testing.assert_array_equal(result[name], array)
        assert result[name].dtype == array.dtype


def test_stream_longer_than_its_manifest_is_refused():
    original = weights()
    assembler = Assembler(describe(original), source="update from x")
    for chunk in iter_bytes(original):
        assembler.add(chunk)
    with pytest.raises(InputError, match="more than") as raised:
        assembler.add(b"\x00")
    assert raised.value.reason == "Malformed"


def test_manifest_above_the_size_bound_is_refused_before_any_data():
    with pytest.raises(InputError, match="at most 100 are accepted") as raised:
        check_manifest(describe(weights()), expected=None, max_bytes=100, source="u")
    assert raised.value.reason == "TooLarge"


def test_infinite_value_is_refused_naming_the_tensor():
    bad = weights()
    bad["0.bias"][3] = np.inf
    with pytest.raises(InputError, match=r"'0\.bias'"):
        check_finite(bad, source="update from x")


def test_equal_tensors_and_metadata_give_byte_identical_files(tmp_path):
    first = write_atomic(tmp_path / "a.safetensors", weights(), {"b": "1", "a": "2"})
    second = write_atomic(tmp_path / "b.safetensors", weights(), {"a": "2", "b": "1"})
    assert first == second == file_digest(tmp_path / "a.safetensors")
    assert read_metadata(tmp_path / "a.safetensors") == {"a": "2", "b": "1"}
    loaded = read_file(tmp_path / "a.safetensors")
    assert payload_digest(loaded) == payload_digest(weights())


def test_written_file_leaves_no_temporary_behind(tmp_path):
    write_atomic(tmp_path / "m.safetensors", weights())
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def shuffled(original: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same tensors in another manifest order than the file's name order."""
    names = list(original)
    random.Random(1).shuffle(names)
    return {name: original[name] for name in reversed(sorted(names))}


def uneven_chunks(data: bytes, seed: int = 0) -> list[bytes]:
    """``data`` cut at random places, so elements and tensors straddle chunks."""
    rng = random.Random(seed)
    chunks, start = [], 0
    while start < len(data):
        end = start + rng.choice([1, 3, 5, 7, 4096, 10_001])
        chunks.append(data[start:end])
        start = end
    return chunks


def test_streamed_file_is_byte_identical_to_the_written_one(tmp_path):
    original = shuffled(weights())
    expected = write_atomic(tmp_path / "whole.safetensors", original)
    path = tmp_path / "streamed.safetensors"
    with TensorFileWriter(path, describe(original), source="test") as writer:
        for chunk in uneven_chunks(b"".join(iter_bytes(original))):
            writer.add(chunk)
        writer.finish()
        writer.commit()
    assert file_digest(path) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "streamed.safetensors",
        "whole.safetensors",
    ]


@pytest.mark.parametrize("seed", range(5))
def test_streamed_nan_is_refused_even_when_a_chunk_boundary_cuts_it(tmp_path, seed):
    bad = weights()
    bad["0.weight"][17, 3] = np.nan
    path = tmp_path / "u.safetensors"
    writer = TensorFileWriter(path, describe(bad), source="update from x")
    with (
        pytest.raises(InputError, match=r"'0\.weight'.*element 1193 ") as raised,
        writer,
    ):
        for chunk in uneven_chunks(b"".join(iter_bytes(bad)), seed):
            writer.add(chunk)
    assert raised.value.reason == "NotFinite"
    assert list(tmp_path.iterdir()) == []


def test_streamed_update_longer_or_shorter_than_declared_leaves_no_file(tmp_path):
    original = weights()
    data = b"".join(iter_bytes(original))
    path = tmp_path / "u.safetensors"
    writer = TensorFileWriter(path, describe(original), source="u")
    with pytest.raises(InputError, match="more than") as longer, writer:
        writer.add(data + b"\x00")
    writer = TensorFileWriter(path, describe(original), source="u")
    with pytest.raises(InputError, match="ended after 100 of") as shorter, writer:
        writer.add(data[:100])
        writer.finish()
    assert (longer.value.reason, shorter.value.reason) == ("Malformed", "Truncated")
    assert list(tmp_path.iterdir()) == []
