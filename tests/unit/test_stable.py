"""smb.server.stable: which writes must reach stable storage before their answer."""

from __future__ import annotations

import pytest

from smb.server.stable import write_through
from smb.wire.create import CreateOptions
from smb.wire.io import WRITE_FLAG_WRITE_THROUGH

NON_DIR = int(CreateOptions.NON_DIRECTORY_FILE)


@pytest.mark.parametrize("flags, options, ca, expected", [
    (0, NON_DIR, False, False),                                     # a plain share: page cache
    (WRITE_FLAG_WRITE_THROUGH, NON_DIR, False, True),               # asked by the write
    (0, NON_DIR | CreateOptions.WRITE_THROUGH, False, True),        # asked by the open
    (0, NON_DIR, True, True),                                       # a CA share: always
    (0x2, NON_DIR | CreateOptions.NO_INTERMEDIATE_BUFFERING, False, False),  # unbuffered only
])
def test_write_through(flags, options, ca, expected):
    assert write_through(flags, options, ca) is expected
