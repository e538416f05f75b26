"""The command line's parser, progress output and the overhead measurement."""
