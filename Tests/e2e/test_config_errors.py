"""Guarantee 7 for the daemon: a broken config, an unknown key, a bad value or an unusable directory
stops `tlstap run` with exit 78 (EX_CONFIG) and one line naming the file, line and key."""
import os

import pytest

from conftest import run


@pytest.mark.parametrize("content, expected", [
    ('rotate-every = "5x"\n', ":1: rotate-every: '5x' is not a duration"),
    ('flush-every = "1s"\nbogus = 1\n', ":2: unknown key 'bogus'"),
    ('snaplen = "lots"\n', ":1: snaplen:"),
    ('rotate-every = \n', ":1"),
])
def test_bad_config_is_one_clear_line_and_exit_78(tlstap, tmp_path, content, expected):
    """Guarantee 7: a broken config stops `tlstap run` with exit ≠ 0 and one message naming file and line."""
    config = tmp_path / "tlstap.toml"
    config.write_text(content)
    result = run([tlstap, "run", "--config", str(config), "--segment-dir", str(tmp_path / "segments")], check=False)
    assert result.returncode == 78, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(config) + expected in lines[0], result.stderr
    assert not (tmp_path / "segments").exists() or not os.listdir(tmp_path / "segments")


def test_unusable_segment_directory_is_named(tlstap, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run([tlstap, "run", "--segment-dir", str(blocker / "segments")], check=False)
    assert result.returncode == 78, result
    assert str(blocker / "segments") in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
