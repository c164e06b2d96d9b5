"""tools/chain_probe.py on the CPU: the call orders it times, how it attributes the chain's time to each kind, and
weight shapes refused with the rule."""
import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import chain_probe  # noqa: E402


def test_the_orders_keep_every_call_layer_by_layer():
    seqs = chain_probe.sequences([["a0", "a1"], ["b0", "b1"], ["c0", "c1"]])
    assert seqs[("alone", 1)] == ["b0", "b1"]
    assert seqs[("chain",)] == ["a0", "b0", "c0", "a1", "b1", "c1"]
    assert seqs[("without", 0)] == ["b0", "c0", "b1", "c1"]
    assert seqs[("without", 2)] == ["a0", "b0", "a1", "b1"]
    assert len(seqs) == 3 + 1 + 3


def test_a_kind_that_costs_more_inside_the_chain_shows_its_excess():
    us = {("alone", 0): 19.0, ("alone", 1): 14.0, ("chain",): 45.0, ("without", 0): 14.5, ("without", 1): 30.5}
    a, b = chain_probe.attribution(us, 2)
    assert a == {"alone": 19.0, "in_chain": 30.5, "excess": 11.5}   # the one that loses
    assert b == {"alone": 14.0, "in_chain": 14.5, "excess": 0.5}


def test_weight_shapes_are_parsed_or_refused_with_the_rule():
    assert chain_probe.shape("6144x4096") == (6144, 4096) and chain_probe.shape("128X2880") == (128, 2880)
    assert chain_probe.chain(chain_probe.LLAMA_8B)[2] == (28672, 4096)
    for bad, rule in (("6144", "MxK"), ("6144x4096x2", "MxK"), ("0x4096", "M >= 1"), ("128x2881", "multiple of 8")):
        with pytest.raises(argparse.ArgumentTypeError, match=rule):
            chain_probe.shape(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="two or more"):
        chain_probe.chain("6144x4096")
