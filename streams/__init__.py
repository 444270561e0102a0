"""Thin glue: the batch command, the CLI and (with faust) the stream processor."""
