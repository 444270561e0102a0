"""Adapters at the network edge, between the hospital's systems and people and Kafka: the nursing
worklist page (worklist.py, its view in board.py). Above streams/ (the worker), below cli/."""
