"""Adapters at the network edge, between the hospital's systems and people and Kafka: the HL7 v2
MLLP listener (mllp.py), the FHIR R4 endpoint (fhir_http.py), the bridge that writes their
translations into Kafka (bridge.py), the feed commands (gateway.py), and the nursing worklist page
(worklist.py, its view in board.py). Above streams/ (the worker), below cli/ (the entrypoints)."""
