import re

import pytest

from workflow_scripts.common import ALPHA_REGEX, atomic_dir, atomic_path, format_alpha


@pytest.mark.parametrize(
    "alpha,text",
    [
        (0.5, "0.5"),
        (2.0, "2"),
        (2, "2"),
        ("2.00", "2"),
        (-0.5, "-0.5"),
        (1e-3, "0.001"),
        (25, "25"),
        (0.0, "0"),
        (-0.0, "0"),
        (1e-7, "0.0000001"),
    ],
)
def test_format_alpha(alpha, text):
    assert format_alpha(alpha) == text
    assert re.fullmatch(ALPHA_REGEX, text)


def test_format_alpha_rejects_nan():
    with pytest.raises(ValueError):
        format_alpha(float("nan"))


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    out = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "model.safetensors").write_text("partial")
            raise RuntimeError("killed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_existing(tmp_path):
    out = tmp_path / "ckpt"
    with atomic_dir(out) as tmp:
        (tmp / "old").write_text("x")
    with atomic_dir(out) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == [".expo-output", "new"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_atomic_path(tmp_path):
    out = tmp_path / "a.json"
    with pytest.raises(KeyError):
        with atomic_path(out) as tmp:
            tmp.write_text("{")
            raise KeyError
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_path(out) as tmp:
        tmp.write_text("{}")
    assert out.read_text() == "{}"
