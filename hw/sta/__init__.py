"""nmaccel.hw.sta."""
