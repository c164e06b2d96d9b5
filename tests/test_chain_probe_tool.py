"""tools/chain_probe.py on the CPU: the four call orders it times, and weight shapes refused with the rule."""
import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import chain_probe  # noqa: E402


def test_the_orders_alternate_the_two_weights_and_keep_every_call():
    seqs = chain_probe.sequences(["a0", "a1", "a2"], ["b0", "b1", "b2"])
    assert seqs["A"] == ["a0", "a1", "a2"] and seqs["B"] == ["b0", "b1", "b2"]
    assert seqs["A,B"] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert seqs["B,A"] == ["b0", "a0", "b1", "a1", "b2", "a2"]


def test_weight_shapes_are_parsed_or_refused_with_the_rule():
    assert chain_probe.shape("6144x4096") == (6144, 4096) and chain_probe.shape("128X2880") == (128, 2880)
    for bad, rule in (("6144", "MxK"), ("6144x4096x2", "MxK"), ("0x4096", "M >= 1"), ("128x2881", "multiple of 8")):
        with pytest.raises(argparse.ArgumentTypeError, match=rule):
            chain_probe.shape(bad)
