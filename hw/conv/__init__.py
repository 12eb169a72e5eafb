"""nmaccel.hw.conv."""
