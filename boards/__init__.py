"""nmaccel.boards."""
