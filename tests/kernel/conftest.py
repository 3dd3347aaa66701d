"""The kernel-client lab for a test module: one guest boot per module (a boot
under software emulation takes ~12 s), both servers in the lab's namespace.
hanode's log must hold no traceback at the end."""

from __future__ import annotations

import pytest

import guestlab


@pytest.fixture(scope="module")
def lab():
    with guestlab.KernelLab() as kernel_lab:
        print(f"guest booted in {kernel_lab.guest.boot_seconds:.1f}s ({guestlab.accel()})")
        yield kernel_lab
        kernel_lab.server_logs_clean()
