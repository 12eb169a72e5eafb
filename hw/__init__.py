"""nmaccel.hw."""
