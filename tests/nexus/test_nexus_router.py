import torch

from nexus.router import Router, featurize, fnv1a_32


def test_fnv1a_matches_the_reference_vectors():
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_features_are_case_insensitive_unit_vectors():
    x = featurize("Max(3,4)=", 256, 3)
    assert x.shape == (256,) and abs(float(x.norm()) - 1.0) < 1e-6
    assert torch.equal(x, featurize("max(3,4)=", 256, 3))
    assert float(featurize("", 256, 3).norm()) == 0.0


def test_choose_respects_the_allowed_set():
    router = Router(torch.tensor([[0.0] * 8, [1.0] * 8]), torch.tensor([0.0, 0.0]), ["a", "b"], 8, 2)
    assert router.choose("hello") == "b"
    assert router.choose("hello", allowed={"a"}) == "a"
