"""nmaccel.hw.common."""
