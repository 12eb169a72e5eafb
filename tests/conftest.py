"""Fixtures shared by the test folders."""

import pytest


@pytest.fixture
def usage_error(capsys):
    """``usage_error(argv)``: run ``nmaccel argv``, which argparse must refuse (exit status 2,
    no traceback); returns what it printed on standard error."""
    def run(argv):
        from nmaccel.cli import main
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err
    return run
