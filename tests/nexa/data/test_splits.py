import numpy as np
import pyarrow as pa
import pytest

from nexa.data.splits import assign_splits, parse_fractions


def test_splits_are_deterministic_and_follow_fractions():
    norm = pa.array([f"row {i}" for i in range(2000)])
    first = assign_splits(norm, np.arange(2000), {"train": 0.8, "val": 0.1, "test": 0.1}).to_pylist()
    again = assign_splits(norm, np.arange(2000), {"train": 0.8, "val": 0.1, "test": 0.1}).to_pylist()
    assert first == again
    share = first.count("train") / 2000
    assert 0.76 < share < 0.84 and first.count("val") > 150 and first.count("test") > 150


def test_a_row_keeps_its_split_when_others_are_added():
    fractions = {"train": 0.5, "test": 0.5}
    small = assign_splits(pa.array(["a", "b", "c"]), np.arange(3), fractions).to_pylist()
    large = assign_splits(pa.array(["x", "a", "y", "b", "c"]), np.arange(5), fractions).to_pylist()
    assert [large[1], large[3], large[4]] == small


def test_near_duplicate_clusters_share_a_split():
    norm = pa.array([f"text {i}" for i in range(300)])
    clusters = np.arange(300) // 3 * 3  # clusters of three consecutive rows
    splits = assign_splits(norm, clusters, {"train": 0.34, "val": 0.33, "test": 0.33}).to_pylist()
    assert all(len({splits[i], splits[i + 1], splits[i + 2]}) == 1 for i in range(0, 300, 3))
    assert len(set(splits)) == 3


def test_given_splits_are_kept():
    splits = assign_splits(pa.array(["a", "b"]), np.arange(2), {"train": 1.0}, given=pa.array(["eval", None])).to_pylist()
    assert splits == ["eval", "train"]


@pytest.mark.parametrize("text", ["train=0.5,test=0.4", "train", "train=x", "train=1.2,test=-0.2"])
def test_bad_fractions_are_refused(text):
    with pytest.raises(ValueError):
        parse_fractions(text)


def test_text_buckets_read_every_byte_and_spread_evenly():
    from nexa.data.splits import text_buckets

    base = "x" * 40
    texts = [base, base[:20] + "y" + base[21:], base + "z", "", "short"]
    buckets = text_buckets(pa.array(texts))
    assert len(set(buckets.tolist())) == len(texts) and ((buckets >= 0) & (buckets < 1)).all()
    assert (text_buckets(pa.array(texts)) == buckets).all()
    spread = text_buckets(pa.array([f"row number {i}" for i in range(20_000)]))
    assert np.histogram(spread, bins=10, range=(0, 1))[0].min() > 1_800


def test_near_clusters_for_splits_need_no_pairwise_check():
    from nexa.data.dedup import NearDedup, connected_first

    assert connected_first(6, np.array([4, 1, 2]), np.array([5, 2, 4])).tolist() == [0, 1, 1, 3, 1, 1]
    base = "the quick brown fox jumps over the lazy dog near the river bank at dawn"
    texts = [base, "an unrelated line about unit conversion of kilometres", base + " !", "hi", "ho"]
    clusters = NearDedup(threshold=0.7).clusters(pa.array(texts), confirm=False)
    assert clusters.tolist() == [0, 1, 0, 3, 4]


@pytest.mark.parametrize("threshold,num_perm,weights", [(0.5, 64, (0.5, 0.5)), (0.8, 128, (0.1, 0.9)), (0.9, 256, (0.1, 0.9))])
def test_lsh_banding_is_datasketchs_choice(threshold, num_perm, weights):
    from datasketch.lsh import _optimal_param

    from nexa.data.dedup import optimal_banding

    assert optimal_banding(threshold, num_perm, weights) == _optimal_param(threshold, num_perm, *weights)


def test_dedup_banding_table_matches_the_formula():
    """The defaults' banding is looked up, not integrated, at every prepare: the table must equal the grid's answer."""
    from nexa.data.dedup import KNOWN_BANDING, banding_grid

    for (threshold, num_perm, weights), answer in KNOWN_BANDING.items():
        assert banding_grid(threshold, num_perm, weights) == answer
