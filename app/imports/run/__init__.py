"""A run of an import: the pipeline from blocks to writes, and the sink that writes and classifies rows."""
