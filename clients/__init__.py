"""Programs that call a running Shortlist over gRPC: the CLI, the demo, the load tools.

They import the contract only (``shortlist.v1`` stubs and the thin ``shortlist.client``), never
the servers or the model code, so what they measure or show is what any client would see.
"""
