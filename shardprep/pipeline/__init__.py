"""The build pipeline: sources -> formats -> render/tokenize -> examples -> shards -> manifest."""
