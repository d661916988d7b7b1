"""Corpus.open checks shard sizes, document indexes, token-id range and manifest names, naming the file."""

import json
import shutil

import numpy as np
import pytest

from mixlab.data.corpus import Corpus, shard_paths
from mixlab.errors import DataError


@pytest.fixture()
def corpus_copy(tiny_corpus, tmp_path):
    dst = tmp_path / "c"
    shutil.copytree(tiny_corpus.root, dst)
    return dst


def test_intact_copy_opens(corpus_copy):
    assert Corpus.open(corpus_copy).domains


def test_truncated_index_is_named(corpus_copy):
    _, idx = shard_paths(corpus_copy, "code", "train")
    idx.write_bytes(idx.read_bytes()[:-16])
    with pytest.raises(DataError, match=r"code/train\.idx\.npy: corrupt document index"):
        Corpus.open(corpus_copy)


def test_index_of_wrong_length_is_named(corpus_copy):
    _, idx = shard_paths(corpus_copy, "code", "val")
    np.save(idx, np.load(idx)[:-1])
    with pytest.raises(DataError, match=r"code/val\.idx\.npy: corrupt document index"):
        Corpus.open(corpus_copy)


def test_ids_beyond_the_vocabulary_are_found_on_open(corpus_copy):
    bin_path, _ = shard_paths(corpus_copy, "english", "train")
    arr = np.fromfile(bin_path, dtype=np.uint16)
    arr[len(arr) // 2] = 60000  # same size, one id past the 257-id byte vocabulary
    arr.tofile(bin_path)
    with pytest.raises(DataError, match=r"english/train\.bin: corrupt shard \(token id 60000"):
        Corpus.open(corpus_copy)


def test_manifest_domain_names_are_rechecked(corpus_copy):
    m = json.loads((corpus_copy / "manifest.json").read_text())
    m["domains"]["../evil"] = m["domains"].pop("code")
    (corpus_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match=r"invalid domain name '\.\./evil'"):
        Corpus.open(corpus_copy)
