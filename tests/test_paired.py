"""tools/paired.py: heads from different result files compared seed by seed."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import paired


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_paired_differences_follow_the_seeds_and_the_filters(tmp_path, capsys):
    ref = write(tmp_path / "ref.csv", "head,seed,test_acc\nlr,0,0.80\nlr,1,0.70\nsvc,0,0.10\n")
    other = write(
        tmp_path / "o.csv",
        "head,seed,status,test_acc\nft,1,ok,0.75\nft,0,ok,0.82\nft,2,ok,0.90\nft,3,failed,0.0\n",
    )
    paired.main([f"LR={ref}@head=lr", f"FT={other}"])
    rows = capsys.readouterr().out.splitlines()
    assert rows[2] == "| LR | 2 | 75.00 ± 63.53 | (reference) | – |"
    # seed 0: +2, seed 1: +5 (seed 2 has no reference draw, seed 3 failed)
    assert rows[3] == "| FT | 3 | 82.33 ± 18.64 | +3.50 ± 19.06 (n=2) | 2 / 2 |"


def test_a_filter_that_leaves_a_seed_twice_is_an_error(tmp_path):
    both = write(tmp_path / "b.csv", "head,seed,test_acc\nlr,0,0.8\nsvc,0,0.7\n")
    with pytest.raises(SystemExit, match="seed 0"):
        paired.load(f"x={both}")
    with pytest.raises(SystemExit, match="no finished rows"):
        paired.load(f"x={both}@head=mlp")


def test_bad_specs_and_unshared_draws_get_one_message(tmp_path, capsys):
    ref = write(tmp_path / "ref.csv", "head,seed,test_acc\nlr,0,0.8\n")
    other = write(tmp_path / "o.csv", "head,seed,test_acc\nft,1,0.9\n")
    for spec in (f"x={ref}@head", str(ref), f"x={tmp_path / 'none.csv'}"):
        with pytest.raises(SystemExit, match="error: "):
            paired.load(spec)
    paired.main([f"LR={ref}", f"FT={other}"])
    assert capsys.readouterr().out.splitlines()[3].endswith("| – (no shared draws) | – |")
