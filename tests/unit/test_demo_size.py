"""Sizes as ``hanode demo --size`` takes them."""

from __future__ import annotations

import pytest

from hanode.cli import UserError
from hanode.demo import parse_size


@pytest.mark.parametrize("text,size", [("256M", 256 << 20), ("64k", 64 << 10), ("1G", 1 << 30),
                                       ("4096", 4096), ("8MiB", 8 << 20)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "1T", "-5M", "M", "1.5G"])
def test_bad_sizes(text):
    with pytest.raises(UserError, match="is not a size"):
        parse_size(text)
