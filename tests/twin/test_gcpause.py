"""gc_paused: the collector is off inside the block and back as it was afterwards, also after an error."""

from __future__ import annotations

import gc

import pytest

from iotistic.twin.gcpause import gc_paused


def test_paused_inside_and_enabled_again_after_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_leaves_a_collector_someone_else_disabled_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
