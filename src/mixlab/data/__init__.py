"""mixlab.data: domain sources, tokenizers, packed shards + manifest, the built-in corpus, the sampler.

``prepare_corpus(config)`` writes a corpus; ``Corpus.open(path)`` reads it;
``MixtureSampler(corpus, mixture, seq_len=..., batch_size=...)`` serves training batches in the
mixture's proportions; ``builtin_corpus()`` prepares (once) and opens the embedded default corpus.
"""

from mixlab.data.builtin import builtin_corpus, default_builtin_dir, prepare_builtin
from mixlab.data.config import (
    CorpusConfig,
    DomainConfig,
    SamplerConfig,
    TokenizerConfig,
    load_corpus_config,
    load_sampler_config,
)
from mixlab.data.corpus import Corpus
from mixlab.data.dataset import MixtureDataset
from mixlab.data.prepare import IterableSource, PrepareResult, prepare_corpus, prepare_domains
from mixlab.data.sampler import Batch, MixtureSampler
from mixlab.data.tokenizers import ByteTokenizer, HFTokenizer, Tokenizer, train_bpe

__all__ = [
    "Batch",
    "ByteTokenizer",
    "Corpus",
    "CorpusConfig",
    "DomainConfig",
    "HFTokenizer",
    "IterableSource",
    "MixtureDataset",
    "MixtureSampler",
    "PrepareResult",
    "SamplerConfig",
    "Tokenizer",
    "builtin_corpus",
    "default_builtin_dir",
    "prepare_builtin",
    "TokenizerConfig",
    "load_corpus_config",
    "load_sampler_config",
    "prepare_corpus",
    "prepare_domains",
    "train_bpe",
]
