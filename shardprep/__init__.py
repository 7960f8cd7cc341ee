"""shardprep: chat, preference and text data to tokenized Parquet training shards."""

__version__ = "0.1.0"
FORMAT_VERSION = 1
