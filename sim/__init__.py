"""nmaccel.sim."""
