"""The memory check of training: the estimate grows as the input size squared, and a run that cannot fit
is refused before any chunk is rendered, naming a batch size that fits."""

from __future__ import annotations

import pytest

from marsice_plugin.cnn.memory import (
    BASE_BYTES,
    TRAINING_FACTOR,
    available_bytes,
    check_training_memory,
    layer_output_bytes,
)
from marsice_plugin.errors import TrainingMemoryError

GIB = 2**30


def test_layer_outputs_grow_as_the_square_of_the_input_size():
    small, large = layer_output_bytes(64), layer_output_bytes(128)
    assert large == pytest.approx(4 * small, rel=0.01)  # the pooled head adds a constant few floats
    # 256 px: 196 MiB per chunk, the figure the module's docstring quotes
    assert layer_output_bytes(256) / 2**20 == pytest.approx(195.6, abs=0.1)


def test_a_batch_that_fits_passes_and_returns_its_estimate():
    need = check_training_memory(64, 8, data_bytes=GIB, available=64 * GIB)
    assert need == int(TRAINING_FACTOR * layer_output_bytes(64) * 8 + BASE_BYTES + GIB)


def test_a_batch_that_does_not_fit_is_refused_with_the_largest_batch_that_does():
    per_chunk = TRAINING_FACTOR * layer_output_bytes(512)
    available = int(BASE_BYTES + 10.5 * per_chunk)  # room for 10 chunks, not 11
    with pytest.raises(TrainingMemoryError, match=r"batches of 25 needs about .* GiB .*: use --batch-size 10 or less"):
        check_training_memory(512, 25, available=available)
    assert check_training_memory(512, 10, available=available) <= available
    with pytest.raises(TrainingMemoryError, match="use a smaller --input-size"):
        check_training_memory(512, 2, available=int(BASE_BYTES + 0.5 * per_chunk))


def test_available_memory_is_read_from_meminfo_and_unknown_is_none(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n")
    assert available_bytes(meminfo) == 20000000 * 1024
    meminfo.write_text("MemTotal: 1 kB\n")
    assert available_bytes(meminfo) is None
    assert available_bytes(tmp_path / "missing") is None


def test_train_cli_refuses_before_rendering(marsice_cli, tmp_path):
    """1024-px chunks in batches of 10 000 need terabytes: refused at once, one line, exit 2, nothing written."""
    out = tmp_path / "m.keras"
    proc = marsice_cli("train", "--synthetic", "4", "--input-size", "1024", "--batch-size", "10000", "-o", str(out))
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "training 1024-px chunks in batches of 10000 needs about" in line and "--batch-size" in line
    assert not tmp_path.joinpath("m.keras").exists() and list(tmp_path.iterdir()) == []
